"""A human-readable overview of a data folder (catalog + interactions): counts, schema and example rows.

It is what ``unisem data inspect`` prints, to eyeball an import before running the pipeline on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE, read_catalog, read_interactions


class DataOverview(NamedTuple):
    items: int
    users: int
    interactions: int
    items_with_interactions: int
    unknown_item_interactions: int
    missing_titles: int
    per_user_min: int
    per_user_mean: float
    per_user_max: int
    first_timestamp: str | None
    last_timestamp: str | None


def overview(catalog: pa.Table, interactions: pa.Table) -> DataOverview:
    per_user = pc.value_counts(interactions["user_id"]).field("counts").to_numpy()
    used = pc.unique(interactions["item_id"])
    unknown = int(pc.sum(pc.invert(pc.is_in(interactions["item_id"], value_set=catalog["item_id"].combine_chunks()))).as_py() or 0)
    ts = interactions["timestamp"]
    first = last = None
    if ts.null_count < len(ts):
        first, last = (str(v) for v in (pc.min(ts).as_py(), pc.max(ts).as_py()))
    return DataOverview(
        items=catalog.num_rows,
        users=len(per_user),
        interactions=interactions.num_rows,
        items_with_interactions=int(pc.sum(pc.is_in(catalog["item_id"], value_set=used)).as_py() or 0),
        unknown_item_interactions=unknown,
        missing_titles=catalog["title"].null_count,
        per_user_min=int(per_user.min()),
        per_user_mean=float(np.mean(per_user)),
        per_user_max=int(per_user.max()),
        first_timestamp=first,
        last_timestamp=last,
    )


def _examples(table: pa.Table, n: int) -> str:
    lines = []
    for row in table.slice(0, n).to_pylist():
        lines.append("  " + ", ".join(f"{k}={v!r}" for k, v in row.items() if v is not None))
    return "\n".join(lines)


def describe(folder: str | Path, examples: int = 3) -> str:
    folder = Path(folder)
    catalog = read_catalog(folder / CATALOG_FILE)
    interactions = read_interactions(folder / INTERACTIONS_FILE)
    o = overview(catalog, interactions)
    out = [
        f"{folder}",
        f"  items {o.items:,} ({o.items_with_interactions:,} with interactions, {o.missing_titles:,} without title)",
        f"  users {o.users:,}; interactions {o.interactions:,}"
        f" ({o.unknown_item_interactions:,} naming items absent from the catalog)",
        f"  interactions per user: min {o.per_user_min}, mean {o.per_user_mean:.2f}, max {o.per_user_max}",
    ]
    if o.first_timestamp:
        out.append(f"  time span: {o.first_timestamp} .. {o.last_timestamp}")
    out += [
        f"\n{CATALOG_FILE} schema:",
        "\n".join(f"  {f.name}: {f.type}" for f in catalog.schema),
        "examples:",
        _examples(catalog, examples),
        f"\n{INTERACTIONS_FILE} schema:",
        "\n".join(f"  {f.name}: {f.type}" for f in interactions.schema),
        "examples:",
        _examples(interactions, examples),
    ]
    return "\n".join(out)
