"""Small catalog / interaction Parquet files in the data contract, for the Spark feature and gate tests."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from unisem.data.contract import CATALOG_SCHEMA, INTERACTIONS_SCHEMA

SHADES = ("rose", "coral", "plum", "nude", "berry", "ruby", "sand", "mocha", "peach", "wine")
KINDS = ("lipstick", "nail polish", "eye shadow", "face cream", "shampoo", "mascara", "blush", "serum")


def write_catalog(path, ids, titles=None, brands=None, prices=None):
    n = len(ids)
    table = pa.table(
        {
            "item_id": list(ids),
            "title": list(titles) if titles is not None else [f"Product number {i}" for i in ids],
            "description": [None] * n,
            "brand": list(brands) if brands is not None else ["Acme"] * n,
            "categories": [["Makeup", "Eyes"]] * n,
            "price": list(prices) if prices is not None else [9.5] * n,
            "text": [None] * n,
        },
        schema=CATALOG_SCHEMA,
    )
    pq.write_table(table, path)
    return path


def write_events(path, events, ordered_by="position"):
    """events: (user, item, order) tuples; order is a position or seconds since 2024-01-01 UTC."""
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    users, items, orders = zip(*events) if events else ((), (), ())
    n = len(users)
    table = pa.table(
        {
            "user_id": list(users),
            "item_id": list(items),
            "timestamp": [t0 + timedelta(seconds=o) for o in orders] if ordered_by == "timestamp" else [None] * n,
            "position": list(orders) if ordered_by == "position" else [None] * n,
        },
        schema=INTERACTIONS_SCHEMA,
    )
    pq.write_table(table, path)
    return path


def clean_catalog(n: int = 100):
    """Ids, distinct readable titles and brands for n items."""
    ids = [f"item{j:04d}" for j in range(n)]
    titles = [f"{SHADES[j % 10].title()} {KINDS[(j // 10) % 8]} no. {j}" for j in range(n)]
    brands = [f"Brand {j % 7}" for j in range(n)]
    return ids, titles, brands


def uniform_log(ids, users: int, per_user: int, seed: int = 0, prefix: str = "user"):
    rng = random.Random(seed)
    return [(f"{prefix}{u:04d}", rng.choice(ids), p) for u in range(users) for p in range(per_user)]
