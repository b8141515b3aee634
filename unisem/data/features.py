"""The feature job: from a checked catalog and interaction log to the training inputs, on Spark.

Writes the features folder of ``unisem.data.dataset`` (items/, users/, sequences/, cold_items/ as Spark
part-file folders, and manifest.json). Vocabularies are stable from night to night when the previous
features folder is given: a known id keeps its index and new ids are appended (sorted by id, so the result
does not depend on how Spark partitioned the input). The whole folder is written to a temporary sibling and
renamed, so a crash never leaves a half-built folder and a rerun on the same input gives the same output.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from unisem.atomic import atomic_dir
from unisem.config import UnisemConfig
from unisem.data.contract import DataContractError, InputError
from unisem.data.inputs import read_inputs
from unisem.data.spark import spark_error_summary, spark_errors
from unisem.data.dataset import (
    COLD_ITEMS_TABLE,
    ITEMS_TABLE,
    MANIFEST_FILE,
    SEQUENCES_TABLE,
    USERS_TABLE,
    FeaturesError,
)

def _texts_in_pandas(template: str):
    """mapInPandas function: the item text of each catalog row, by ``unisem.text.template`` (our own logic)."""

    def render(batches: Iterator["object"]) -> Iterator["object"]:
        import pandas as pd

        from unisem.text.template import build_item_text

        for frame in batches:
            rows = frame.to_dict("records")
            texts = []
            for row in rows:
                clean = {}
                for key, value in row.items():
                    if value is None or (not hasattr(value, "__len__") and pd.isna(value)):
                        clean[key] = None
                    else:
                        clean[key] = value
                texts.append(build_item_text(clean, template))
            yield pd.DataFrame({"item_id": frame["item_id"], "text": texts})

    return render


def _indexed(df, key: str, index: str, start: int = 0):
    """Number the rows of ``df`` contiguously from ``start`` in ``key`` order (a sort, then row numbers)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # One ordered window: fine for millions of ids (one sort); the offsets stay exact and deterministic.
    return df.withColumn(index, (F.row_number().over(Window.orderBy(key)) - 1 + F.lit(start)).cast("int"))


def cold_item_ids(item_ids_df, share: float, seed: int):
    """The ids of ``share`` of the items by ``unisem.data.dataset.cold_hash`` order (the same rule as the
    in-memory ``choose_cold_items``, so benchmarks and the nightly job hold out the same items)."""
    from pyspark.sql import functions as F

    n = item_ids_df.count()
    k = int(share * n)
    if k == 0:
        return item_ids_df.limit(0).select("item_id")
    return (
        item_ids_df.withColumn("_h", F.sha2(F.concat_ws(":", F.lit(str(int(seed))), F.col("item_id")), 256))
        .orderBy("_h", "item_id")
        .limit(k)
        .select("item_id")
    )


def build_features(
    cfg: UnisemConfig,
    catalog: Path,
    interactions: Path,
    out_dir: Path,
    previous: Path | None = None,
) -> Path:
    """Build the features folder ``out_dir`` from contract Parquet inputs (see the module docstring)."""
    from unisem.data.spark import resolve_master, spark_session
    from unisem.text.template import check_template

    check_template(cfg.text.template)
    catalog, interactions, out_dir = Path(catalog), Path(interactions), Path(out_dir)
    if previous is not None:
        previous = Path(previous)
        if not (previous / ITEMS_TABLE).exists() and not (previous / f"{ITEMS_TABLE}.parquet").exists():
            raise FeaturesError(f"{previous}: not a features folder (no {ITEMS_TABLE} table) to take vocabularies from")
    spark = spark_session(resolve_master(None, cfg.orchestration.spark_master))
    try:
        with atomic_dir(out_dir) as tmp:
            manifest = _build(spark, cfg, catalog, interactions, tmp, previous)
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    except spark_errors() as exc:
        raise DataContractError(
            f"{catalog} / {interactions}: the feature job failed: {spark_error_summary(exc)}"
        ) from exc
    return out_dir


def _read_table(spark, folder: Path, name: str):
    path = folder / name if (folder / name).exists() else folder / f"{name}.parquet"
    return spark.read.parquet(str(path))


def _build(spark, cfg: UnisemConfig, catalog: Path, interactions: Path, tmp: Path, previous: Path | None) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    data = cfg.data
    inputs = read_inputs(spark, catalog, interactions)
    cat = inputs.catalog.filter(F.col("item_id").isNotNull() & (F.trim("item_id") != ""))
    dup = cat.groupBy("item_id").count().filter("count > 1").orderBy("item_id").limit(1).collect()
    if dup:
        raise DataContractError(f"{catalog}: field item_id: duplicated id {dup[0]['item_id']!r}")
    cat = cat.persist(StorageLevel.MEMORY_AND_DISK)
    catalog_items = cat.count()
    if catalog_items == 0:
        raise DataContractError(f"{catalog}: the catalog has no items")

    # --- item vocabulary: previous indices kept, new ids appended in id order ---
    texts = cat.mapInPandas(_texts_in_pandas(cfg.text.template), "item_id string, text string")
    current = cat.select("item_id", "title").join(texts, "item_id")
    if previous is not None:
        prev_items = _read_table(spark, previous, ITEMS_TABLE).select(
            F.col("item_index").cast("int"), "item_id", F.col("text").alias("prev_text"), F.col("title").alias("prev_title")
        )
        prev_max = prev_items.agg(F.max("item_index")).first()[0] or 0
        new_ids = current.select("item_id").join(prev_items.select("item_id"), "item_id", "left_anti")
        new_items = _indexed(new_ids, "item_id", "item_index", start=prev_max + 1)
        vocab = prev_items.select("item_id", "item_index").unionByName(new_items)
        items = (
            vocab.join(current, "item_id", "left")
            .join(prev_items.select("item_id", "prev_text", "prev_title"), "item_id", "left")
            .select(
                "item_index",
                "item_id",
                F.coalesce("text", "prev_text").alias("text"),
                F.coalesce("title", "prev_title").alias("title"),
                F.col("text").isNull().alias("_retired"),
            )
        )
    else:
        items = _indexed(current, "item_id", "item_index", start=1).select(
            "item_index", "item_id", "text", "title", F.lit(False).alias("_retired")
        )
    items = items.persist(StorageLevel.MEMORY_AND_DISK)
    item_stats = items.agg(
        F.count("*").alias("n"), F.sum(F.col("_retired").cast("int")).alias("retired"), F.max("item_index").alias("mx")
    ).first()
    if item_stats["mx"] != item_stats["n"]:
        raise FeaturesError(
            f"{previous}: the previous item vocabulary is not contiguous ({item_stats['n']} items, max index {item_stats['mx']})"
        )
    items.select(
        F.col("item_index").cast("int"), "item_id", "text", "title"
    ).orderBy("item_index").write.parquet(str(tmp / ITEMS_TABLE))

    # --- cold-start holdout ---
    cold = cold_item_ids(items.filter(~F.col("_retired")).select("item_id"), data.cold_item_share, data.seed)
    cold_idx = cold.join(items.select("item_id", "item_index"), "item_id").select("item_index")
    cold_idx = cold_idx.persist(StorageLevel.MEMORY_AND_DISK)
    cold_count = cold_idx.count()
    cold_idx.select(F.col("item_index").cast("int")).orderBy("item_index").write.parquet(str(tmp / COLD_ITEMS_TABLE))

    # --- events -> per-user chronological sequences, in one shuffle of the log ---
    # Unknown items are counted here and left out; collect_set drops exact duplicate events; sort_array
    # orders by timestamp, then position, then item id (ties broken the same way on every run).
    events_in = inputs.interactions.filter(F.col("user_id").isNotNull() & F.col("item_id").isNotNull())
    index = items.select("item_id", "item_index")
    joined = events_in.join(F.broadcast(index) if item_stats["n"] <= 2_000_000 else index, "item_id", "left").join(
        F.broadcast(cold_idx.withColumn("_cold", F.lit(True))), "item_index", "left"
    )
    event = F.struct(
        "timestamp", "position", "item_id", "item_index", F.coalesce("_cold", F.lit(False)).alias("_cold")
    )
    per_user = joined.groupBy("user_id").agg(
        F.sort_array(F.collect_set(F.when(F.col("item_index").isNotNull(), event))).alias("ev"),
        F.count("*").alias("raw"),
        F.sum(F.col("item_index").isNull().cast("int")).alias("unknown"),
    )
    per_user = per_user.withColumn("n", F.size("ev")).persist(StorageLevel.MEMORY_AND_DISK)
    user_stats = per_user.agg(
        F.count("*").alias("users"),
        F.sum("raw").alias("raw"),
        F.sum("unknown").alias("unknown"),
        F.sum("n").alias("events"),
        F.sum((F.col("n") < data.min_user_interactions).cast("int")).alias("short"),
    ).first()
    events_total = int(user_stats["raw"] or 0)
    unknown = int(user_stats["unknown"] or 0)
    if unknown and data.unknown_items == "fail":
        example = joined.filter(F.col("item_index").isNull()).select("item_id").orderBy("item_id").first()[0]
        raise DataContractError(
            f"{interactions}: {unknown} interaction(s) name items absent from the catalog, e.g. item_id {example!r}"
            " (data.unknown_items=fail)"
        )
    if int(user_stats["users"] or 0) - int(user_stats["short"] or 0) <= 0:
        raise InputError(
            f"{interactions}: no user is trainable: all {int(user_stats['users'] or 0)} users have fewer than "
            f"data.min_user_interactions={data.min_user_interactions} interactions (train + valid + test) after "
            f"{unknown} unknown-item and {events_total - unknown - int(user_stats['events'] or 0)} duplicate "
            "interactions were dropped; no features were written"
        )
    kept = per_user.filter(F.col("n") >= data.min_user_interactions)
    seqs = kept.select(
        "user_id",
        F.element_at("ev", -2)["item_index"].alias("valid_item"),
        F.element_at("ev", -1)["item_index"].alias("test_item"),
        F.transform(
            F.filter(F.slice("ev", 1, F.col("n") - 2), lambda e: ~e["_cold"]), lambda e: e["item_index"]
        ).alias("_hist"),
    )
    seqs = seqs.withColumn(
        "history",
        F.when(
            F.size("_hist") > data.max_seq_len,
            F.slice("_hist", F.size("_hist") - data.max_seq_len + 1, data.max_seq_len),
        ).otherwise(F.col("_hist")),
    ).drop("_hist")

    # --- user vocabulary: known users keep their relative order (exactly their index unless some vanished) ---
    kept_ids = seqs.select("user_id")
    if previous is not None:
        prev_users = _read_table(spark, previous, USERS_TABLE).select("user_id", F.col("user_index").alias("_prev"))
        known_users = kept_ids.join(prev_users, "user_id")
        known_users = _indexed(known_users, "_prev", "user_index", start=0).drop("_prev")
        known_users = known_users.persist(StorageLevel.MEMORY_AND_DISK)
        n_known = known_users.count()
        vanished = prev_users.count() - n_known
        new_users = _indexed(kept_ids.join(prev_users, "user_id", "left_anti"), "user_id", "user_index", start=n_known)
        users = known_users.unionByName(new_users)
    else:
        vanished = 0
        users = _indexed(kept_ids, "user_id", "user_index", start=0)
    users = users.persist(StorageLevel.MEMORY_AND_DISK)
    users.select(F.col("user_index").cast("int"), "user_id").orderBy("user_index").write.parquet(str(tmp / USERS_TABLE))
    seqs.join(users, "user_id").select(
        F.col("user_index").cast("int"),
        F.col("history").cast("array<int>"),
        F.col("valid_item").cast("int"),
        F.col("test_item").cast("int"),
    ).orderBy("user_index").write.parquet(str(tmp / SEQUENCES_TABLE))
    kept_users = users.count()

    for df in (cat, items, cold_idx, per_user, users):
        df.unpersist()
    return {
        "items": int(item_stats["n"]),
        "catalog_items": int(catalog_items),
        "retired_items": int(item_stats["retired"] or 0),
        "users": int(kept_users),
        "users_seen": int(user_stats["users"]),
        "users_dropped_short": int(user_stats["short"] or 0),
        "users_vanished": int(vanished),
        "interactions_in": events_total,
        "unknown_item_interactions": unknown,
        "unknown_items_policy": data.unknown_items,
        "duplicate_interactions_dropped": int(events_total - unknown - int(user_stats["events"] or 0)),
        "interactions_used": int(user_stats["events"] or 0),
        "cold_items": int(cold_count),
        "settings": {
            "max_seq_len": data.max_seq_len,
            "min_user_interactions": data.min_user_interactions,
            "cold_item_share": data.cold_item_share,
            "seed": data.seed,
            "text_template": cfg.text.template,
        },
        "inputs": {"catalog": str(catalog), "interactions": str(interactions)},
        "previous": str(previous) if previous is not None else None,
    }
