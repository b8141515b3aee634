"""Example offending rows for each crossed check: a count says *that* titles are broken, an id says *which*.

Only checks that crossed a level are looked at, each with one small Spark query that stops after
``limit`` rows, so a clean run costs nothing and a dirty one a few seconds. Values are cut to ``WIDTH``
characters (a 100 kB title must not become a 100 kB report).
"""
from __future__ import annotations

from typing import Iterable

from unisem.config import UnisemConfig
from unisem.quality.expectations import MAX_TITLE_CHARS
from unisem.quality.measures import CONTROL_PATTERN, HTML_PATTERN, MOJIBAKE_PATTERN
from unisem.text.template import spark_item_text

LIMIT = 10
WIDTH = 80
# The Great Expectations title-length expectation, whose offenders are looked up like a check's.
TITLE_LENGTH_EXPECTATION = "expect_column_value_lengths_to_be_between(title)"


def _cut(value) -> str | float | int | None:
    if value is None or isinstance(value, (int, float)):
        return value
    text = str(value)
    return text if len(text) <= WIDTH else f"{text[:WIDTH]}… ({len(text):,} characters)"


def _rows(df, key: str, value: str, limit: int) -> list[dict]:
    return [{key: r[key], "value": _cut(r[value])} for r in df.orderBy(key).limit(limit).collect()]


def _queries(catalog, interactions, cfg: UnisemConfig):
    """check (config key, or an expectation) -> a function returning its example rows."""
    from pyspark.sql import functions as F

    text = spark_item_text(cfg.text.template).alias("text")
    items = catalog.select("item_id", "title", "brand", "categories", "price", text)
    title = F.trim(F.col("title"))

    def matching(pattern):
        return lambda n: _rows(items.where(F.col("text").rlike(pattern)), "item_id", "text", n)

    def per_item():
        return interactions.groupBy("item_id").agg(F.count("*").alias("n"))

    def duplicate_titles(normalise: bool):
        def run(n):
            t = items.where(title.isNotNull() & (F.length(title) > 0))
            key = F.lower(F.regexp_replace(title, r"[^\p{L}\p{N}]+", " ")) if normalise else title
            t = t.withColumn("_k", key)
            dups = t.groupBy("_k").count().where("count > 1").select("_k")
            return _rows(t.join(dups, "_k"), "item_id", "title", n)
        return run

    def few_interactions(n):
        counts = catalog.select("item_id").join(per_item(), "item_id", "left").fillna(0, ["n"])
        return _rows(counts.where(F.col("n") < cfg.quality.min_item_interactions), "item_id", "n", n)

    def short_users(n):
        users = interactions.groupBy("user_id").agg(F.count("*").alias("n"))
        return _rows(users.where(F.col("n") < cfg.data.min_user_interactions), "user_id", "n", n)

    def top_items(n):
        return [{"item_id": r["item_id"], "value": r["n"]}
                for r in per_item().orderBy(F.desc("n"), "item_id").limit(n).collect()]

    bad_price = F.col("price").isNotNull() & ((F.col("price") < 0) | (F.col("price") > cfg.quality.max_price)
                                              | F.isnan("price"))
    return {
        "max_html_share": matching(HTML_PATTERN),
        "max_control_char_share": matching(CONTROL_PATTERN),
        "max_mojibake_share": matching(MOJIBAKE_PATTERN),
        "max_empty_text_share": lambda n: _rows(items.where(F.length(F.trim("text")) < cfg.quality.min_text_chars),
                                                "item_id", "text", n),
        "min_title_share": lambda n: _rows(items.where(title.isNull() | (F.length(title) == 0)), "item_id", "title", n),
        "min_median_title_length": lambda n: _rows(items.where(F.length(title) < cfg.quality.min_median_title_length[0]),
                                                   "item_id", "title", n),
        "max_duplicate_title_share": duplicate_titles(False),
        "max_normalized_duplicate_title_share": duplicate_titles(True),
        "max_duplicate_item_id_share": lambda n: _rows(
            catalog.groupBy("item_id").count().where("count > 1"), "item_id", "count", n),
        "max_missing_item_id_share": lambda n: _rows(
            catalog.where(F.col("item_id").isNull() | (F.length(F.trim("item_id")) == 0)).fillna("", ["item_id"]),
            "item_id", "title", n),
        "max_invalid_price_share": lambda n: _rows(items.where(bad_price), "item_id", "price", n),
        "min_brand_share": lambda n: _rows(items.where(F.col("brand").isNull() | (F.length(F.trim("brand")) == 0)),
                                           "item_id", "title", n),
        "min_category_share": lambda n: _rows(items.where(F.coalesce(F.size("categories"), F.lit(0)) <= 0),
                                              "item_id", "title", n),
        "max_unknown_item_share": lambda n: _rows(
            interactions.join(catalog.select("item_id"), "item_id", "left_anti").groupBy("item_id").count(),
            "item_id", "count", n),
        "max_duplicate_event_share": lambda n: _rows(
            interactions.groupBy("user_id", "item_id", "timestamp", "position").count().where("count > 1")
            .groupBy("user_id").agg(F.sum(F.col("count") - 1).alias("duplicates")), "user_id", "duplicates", n),
        "max_items_below_min_share": few_interactions,
        "max_short_user_share": short_users,
        "max_top1pct_share": top_items,
        "max_gini": top_items,
        TITLE_LENGTH_EXPECTATION: lambda n: _rows(items.where(F.length(title) > MAX_TITLE_CHARS), "item_id", "title", n),
    }


def find_offenders(catalog, interactions, cfg: UnisemConfig, checks: Iterable[str], limit: int = LIMIT) -> dict[str, list[dict]]:
    """Up to ``limit`` example rows (``item_id`` or ``user_id``, and the offending ``value``) per named check.

    Checks without row-level offenders (drift, counts) are left out.
    """
    queries = _queries(catalog, interactions, cfg)
    return {check: queries[check](limit) for check in dict.fromkeys(checks) if check in queries}
