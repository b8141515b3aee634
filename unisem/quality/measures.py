"""The gate's measures, computed with Spark built-ins; only small summaries ever reach the driver.

Catalog text quality comes from one aggregation over the catalog. The interaction log is grouped once by
user (event counts and distinct events, hence duplicates) and once by item (counted map-side), and the
distribution statistics come from count-of-counts histograms (``distribution``).
"""
from __future__ import annotations

from typing import NamedTuple

from unisem.config import UnisemConfig
from unisem.quality import distribution as dist
from unisem.text.template import spark_item_text

HTML_PATTERN = r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});|</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>"
CONTROL_PATTERN = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
# UTF-8 read as Latin-1/CP1252: "Ã©" for "é", "Â " for a no-break space, "â€™" for "’", and U+FFFD. The
# second byte of a two-byte sequence reads as U+0080-U+00BF in Latin-1, or as one of CP1252's letters and
# punctuation for 0x80-0x9F ("Ã˜" for "Ø": 0x98 is "˜" in CP1252).
_CP1252_HIGH = r"\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}\x{2013}\x{2014}\x{2018}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}\x{2039}\x{203A}\x{20AC}\x{2122}"
MOJIBAKE_PATTERN = rf"[ÃÂ][\x{{80}}-\x{{BF}}{_CP1252_HIGH}]|â€|\x{{FFFD}}"
TITLE_LENGTH_CAP = 400  # longer titles share the last histogram bin


class Profile(NamedTuple):
    measures: dict[str, float | None]  # every number the gate knows, by name (checks read some of them)
    item_frequency: dict[int, int]  # interactions per catalog item -> number of items (zeros included)
    sequence_lengths: dict[int, int]  # events per user -> number of users
    title_lengths: dict[int, int]  # title length (capped) -> number of titled items


def _share(x, n) -> float | None:
    return float(x) / float(n) if n else None


def catalog_measures(catalog, cfg: UnisemConfig) -> tuple[dict[str, float | None], dict[int, int]]:
    from pyspark.sql import functions as F

    q = cfg.quality
    has_id = F.col("item_id").isNotNull() & (F.length(F.trim("item_id")) > 0)
    title = F.trim(F.col("title"))
    titled = title.isNotNull() & (F.length(title) > 0)
    norm_title = F.trim(
        F.regexp_replace(F.lower(F.regexp_replace(title, r"&[a-zA-Z0-9#]+;", " ")), r"[^\p{L}\p{N}]+", " ")
    )
    text = spark_item_text(cfg.text.template)  # the feature job's text, to the letter
    price = F.col("price")

    def n_if(cond):
        return F.sum(F.when(cond, 1).otherwise(0))

    row = catalog.select(
        has_id.alias("has_id"),
        F.col("item_id"),
        F.when(titled, title).alias("t"),
        F.when(titled, norm_title).alias("nt"),
        text.alias("x"),
        (F.col("brand").isNotNull() & (F.length(F.trim("brand")) > 0)).alias("has_brand"),
        (F.coalesce(F.size("categories"), F.lit(0)) > 0).alias("has_cat"),
        price.alias("price"),
    ).agg(
        F.count("*").alias("rows"),
        n_if(~F.col("has_id")).alias("missing_id"),
        F.countDistinct(F.when(F.col("has_id"), F.col("item_id"))).alias("distinct_ids"),
        n_if(F.col("has_id")).alias("with_id"),
        F.count("t").alias("titled"),
        F.countDistinct("t").alias("distinct_titles"),
        F.countDistinct("nt").alias("distinct_norm_titles"),
        F.percentile_approx(F.length("t"), 0.5, 10000).alias("median_title_length"),
        n_if(F.col("x").rlike(HTML_PATTERN)).alias("html"),
        n_if(F.col("x").rlike(CONTROL_PATTERN)).alias("control"),
        n_if(F.col("x").rlike(MOJIBAKE_PATTERN)).alias("mojibake"),
        n_if(F.length(F.trim("x")) < q.min_text_chars).alias("empty_text"),
        n_if(F.col("has_brand")).alias("brand"),
        n_if(F.col("has_cat")).alias("cat"),
        F.count("price").alias("priced"),
        n_if(F.col("price").isNotNull() & ((F.col("price") < 0) | (F.col("price") > q.max_price) | F.isnan("price"))).alias(
            "bad_price"
        ),
    ).first()
    n = row["rows"]
    lengths = {
        int(r["len"]): int(r["count"])
        for r in catalog.where(titled)
        .groupBy(F.least(F.length(title), F.lit(TITLE_LENGTH_CAP)).alias("len"))
        .count()
        .collect()
    }
    measures = {
        "catalog_rows": float(n),
        "catalog_items": float(row["distinct_ids"]),
        "missing_item_id_share": _share(row["missing_id"], n),
        "duplicate_item_id_share": _share(row["with_id"] - row["distinct_ids"], n),
        "title_share": _share(row["titled"], n),
        "median_title_length": float(row["median_title_length"]) if row["median_title_length"] is not None else 0.0,
        "html_share": _share(row["html"], n),
        "control_char_share": _share(row["control"], n),
        "mojibake_share": _share(row["mojibake"], n),
        "duplicate_title_share": _share(row["titled"] - row["distinct_titles"], row["titled"]) or 0.0,
        "normalized_duplicate_title_share": _share(row["titled"] - row["distinct_norm_titles"], row["titled"]) or 0.0,
        "empty_text_share": _share(row["empty_text"], n),
        "brand_share": _share(row["brand"], n),
        "category_share": _share(row["cat"], n),
        "price_share": _share(row["priced"], n),
        "invalid_price_share": _share(row["bad_price"], row["priced"]) or 0.0,
    }
    return measures, lengths


class InteractionProfile(NamedTuple):
    measures: dict[str, float | None]
    item_frequency: dict[int, int]
    sequence_lengths: dict[int, int]


def interaction_measures(interactions, catalog, cfg: UnisemConfig) -> InteractionProfile:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    # Per user: events (n) and distinct events (d) in one shuffle of the log; duplicates are n - d.
    per_user = interactions.groupBy("user_id").agg(
        F.count("*").alias("n"), F.size(F.collect_set(F.struct("item_id", "timestamp", "position"))).alias("d")
    )
    seq_rows = per_user.groupBy("n").agg(F.count("*").alias("users"), F.sum(F.col("n") - F.col("d")).alias("dup")).collect()
    seq_hist = {int(r["n"]): int(r["users"]) for r in seq_rows}
    dup = sum(int(r["dup"]) for r in seq_rows)
    n_events = sum(n * u for n, u in seq_hist.items())
    # Per item: counted map-side first, so only one row per item and partition crosses the shuffle.
    per_item = interactions.groupBy("item_id").agg(F.count("*").alias("n")).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        ids = catalog.where(F.col("item_id").isNotNull()).select("item_id").distinct()
        unknown = per_item.join(ids, "item_id", "left_anti").agg(F.sum("n").alias("n"), F.count("*").alias("k")).first()
        freq = (
            ids.join(per_item, "item_id", "left")
            .select(F.coalesce(F.col("n"), F.lit(0)).alias("n"))
            .groupBy("n")
            .count()
            .collect()
        )
    finally:
        per_item.unpersist()
    item_hist = {int(r["n"]): int(r["count"]) for r in freq}
    items_seen = sum(c for n, c in item_hist.items() if n > 0) + int(unknown["k"] or 0)
    ih, sh = dist.histogram(item_hist), dist.histogram(seq_hist)
    measures: dict[str, float | None] = {
        "interactions": float(n_events),
        "users": float(sh.units),
        "items_with_interactions": float(items_seen),
        "unknown_items": float(unknown["k"] or 0),
        "unknown_item_share": _share(unknown["n"] or 0, n_events),
        "duplicate_event_share": _share(dup, n_events),
        "top1pct_share": dist.top_share(ih, 0.01),
        "top20pct_share": dist.top_share(ih, 0.20),
        "gini": dist.gini(ih),
        "items_below_min_share": dist.share_below(ih, cfg.quality.min_item_interactions),
        "short_user_share": dist.share_below(sh, cfg.data.min_user_interactions),
    }
    for name, q in (("min", 0.0), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p99", 0.99), ("max", 1.0)):
        measures[f"item_interactions_{name}"] = dist.quantile(ih, q) if ih.units else None
        measures[f"sequence_length_{name}"] = dist.quantile(sh, q) if sh.units else None
    measures["sequence_length_mean"] = sh.total / sh.units if sh.units else None
    measures = {k: (None if v is None else float(v)) for k, v in measures.items()}
    return InteractionProfile(measures, item_hist, seq_hist)


def profile(catalog, interactions, cfg: UnisemConfig) -> Profile:
    cat, lengths = catalog_measures(catalog, cfg)
    inter = interaction_measures(interactions, catalog, cfg)
    return Profile({**cat, **inter.measures}, inter.item_frequency, inter.sequence_lengths, lengths)
