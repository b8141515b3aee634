"""A large synthetic data set (e.g. 1M items, 10M interactions) for the Spark scaling benchmark.

Unlike the demo catalog (``unisem.data.demo``) it is built for size, not for learnability: the demo's
product vocabulary with terse titles, and a simple "next item" Markov chain, generated chunk by chunk.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from unisem.atomic import atomic_dir
from unisem.data.contract import CATALOG_FILE, CATALOG_SCHEMA, INTERACTIONS_FILE, INTERACTIONS_SCHEMA
from unisem.data.demo import BRANDS, DEMO_META_FILE, GENERATOR_VERSION, ROUTINES


def _large_catalog_chunk(start: int, stop: int, rng: np.random.Generator) -> pa.Table:
    n = stop - start
    products = [(r, s) for r in ROUTINES for s in r.steps]
    brand_idx = pa.array(rng.integers(len(BRANDS), size=n))
    prod_idx = pa.array(rng.integers(len(products), size=n))
    brands = pa.array([b for b, _ in BRANDS]).take(brand_idx)
    names = pa.array([s.product for _, s in products]).take(prod_idx)
    cats = pa.array([list(s.categories) for _, s in products], pa.list_(pa.string())).take(prod_idx)
    base = np.asarray([s.base_price for _, s in products])[prod_idx.to_numpy()]
    number = pc.cast(pa.array(np.arange(start, stop)), pa.string())
    ids = pc.binary_join_element_wise("L", pc.utf8_lpad(number, 9, "0"), "")
    titles = pc.binary_join_element_wise(brands, names, pc.binary_join_element_wise("No.", number, ""), " ")
    return pa.table(
        {
            "item_id": ids,
            "title": titles,
            "description": pa.nulls(n, pa.string()),
            "brand": brands,
            "categories": cats,
            "price": pa.array(np.round(base * rng.lognormal(0.0, 0.4, size=n), 2)),
            "text": pa.nulls(n, pa.string()),
        }
    ).cast(CATALOG_SCHEMA)


def _large_interactions_chunk(
    n_rows: int, first_user: int, n_items: int, rng: np.random.Generator
) -> tuple[pa.Table, int]:
    """``n_rows`` interactions of consecutive users, the last one cut short at ``n_rows``; returns the next user."""
    lengths = np.clip(np.rint(rng.lognormal(np.log(9.0), 0.6, size=n_rows // 5 + 1)), 5, 200).astype(np.int64)
    ends = np.cumsum(lengths)
    n_users = int(np.searchsorted(ends, n_rows) + 1)
    lengths = lengths[:n_users]
    lengths[-1] -= int(ends[n_users - 1] - n_rows)
    user_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    user_of_row = np.repeat(np.arange(n_users), lengths)
    # Markov structure: half of the steps go to the "next" item (i + 1), the rest jump to a popular item.
    follow = rng.random(n_rows) < 0.5
    follow[user_start] = False
    jumps = (n_items * rng.random(n_rows) ** 2.5).astype(np.int64)
    run_start = np.flatnonzero(~follow)
    run_of_row = np.cumsum(~follow) - 1
    offset = np.arange(n_rows) - run_start[run_of_row]
    items = (jumps[run_start][run_of_row] + offset) % n_items
    gaps = rng.integers(60, 5 * 86400, size=n_rows)
    cum = np.cumsum(gaps)
    t0 = np.datetime64("2020-01-01T00:00:00", "s").astype(np.int64)
    starts = t0 + rng.integers(0, 3 * 365 * 86400, size=n_users)
    stamps = starts[user_of_row] + cum - cum[user_start][user_of_row] + gaps[user_start][user_of_row]
    user_num = pc.cast(pa.array(first_user + user_of_row), pa.string())
    item_num = pc.cast(pa.array(items), pa.string())
    table = pa.table(
        {
            "user_id": pc.binary_join_element_wise("U", pc.utf8_lpad(user_num, 9, "0"), ""),
            "item_id": pc.binary_join_element_wise("L", pc.utf8_lpad(item_num, 9, "0"), ""),
            "timestamp": pa.array(stamps * 1_000_000, pa.timestamp("us", tz="UTC")),
            "position": pa.array(np.arange(n_rows) - user_start[user_of_row]),
        }
    ).cast(INTERACTIONS_SCHEMA)
    return table, first_user + n_users


def generate_large(
    out_dir: str | Path, items: int, interactions: int, seed: int = 0, chunk_rows: int = 1_000_000
) -> Path:
    """Write a large synthetic data set (e.g. 1M items, 10M interactions) chunk by chunk.

    Only one chunk is in memory at a time (pyarrow ``ParquetWriter``, one row group per chunk), so the size
    is bounded by disk, not memory. Items follow a simple "next item" Markov chain plus power-law jumps;
    text is terse. No user spans two chunks: each chunk's last user is cut short at the chunk's end (the
    next chunk starts a new user), so one user per chunk has fewer events than drawn, possibly below 5.
    """
    if items < 1 or interactions < 1 or chunk_rows < 1:
        raise ValueError("items, interactions and chunk_rows must be positive")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        with pq.ParquetWriter(tmp / CATALOG_FILE, CATALOG_SCHEMA) as writer:
            for start in range(0, items, chunk_rows):
                writer.write_table(_large_catalog_chunk(start, min(start + chunk_rows, items), rng))
        next_user = 0
        with pq.ParquetWriter(tmp / INTERACTIONS_FILE, INTERACTIONS_SCHEMA) as writer:
            for start in range(0, interactions, chunk_rows):
                n = min(chunk_rows, interactions - start)
                table, next_user = _large_interactions_chunk(n, next_user, items, rng)
                writer.write_table(table)
        meta = {"items": items, "interactions": interactions, "users": next_user, "seed": seed,
                "chunk_rows": chunk_rows, "generator_version": GENERATOR_VERSION}
        (tmp / DEMO_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_dir
