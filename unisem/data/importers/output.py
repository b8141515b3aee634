"""The common end of every importer: check both tables against the contract, then write them atomically.

Importers differ only in how they read; what they produce, how unknown items are treated and how the
result lands on disk is decided once here, so a failure anywhere leaves no partial folder behind (and a
previous good import in the same place untouched).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Literal, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from unisem.atomic import atomic_dir
from unisem.data.contract import (
    CATALOG_FILE,
    INTERACTIONS_FILE,
    DataContractError,
    conform_catalog,
    conform_interactions,
)

SUMMARY_FILE = "import.json"


def check_output_path(out_dir: str | Path, inputs: Iterable[str | Path], replace: bool = False,
                      marker: str = SUMMARY_FILE, what: str = "import") -> Path:
    """Refuse, before anything is read or written, an output that would destroy an input or a stranger's folder.

    The output replaces its whole folder atomically, so an output that is an input, holds one or lies inside
    one would delete it; and a folder that is not a previous output of the same kind (no ``marker`` file:
    ``import.json`` for imports, ``demo.json`` for generated data) may be someone's data: it is replaced only
    with ``replace``. An empty folder is fine.
    """
    out = Path(out_dir).expanduser().resolve()
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if out == source:
            raise DataContractError(f"--out {out_dir}: is the input {given}; write the import to another folder")
        if out in source.parents:
            raise DataContractError(f"--out {out_dir}: contains the input {given}; write the import to another folder")
        if source in out.parents:
            raise DataContractError(f"--out {out_dir}: lies inside the input {given}; write the import to another folder")
    if out.exists() and not replace:
        if not out.is_dir():
            raise DataContractError(
                f"--out {out_dir}: is an existing file, not an earlier {what}; choose another folder or pass --replace"
            )
        if not (out / marker).is_file() and any(out.iterdir()):
            raise DataContractError(
                f"--out {out_dir}: is a folder that holds no earlier {what} ({marker} missing); "
                "choose another folder or pass --replace to replace it"
            )
    return out


class ImportSummary(NamedTuple):
    out_dir: Path
    items: int
    users: int
    interactions: int
    # Interactions whose item is not in the catalog, dropped (data.unknown_items == "drop").
    dropped_unknown: int
    # Items in the catalog that no interaction names (kept: they are cold-start candidates).
    items_without_interactions: int
    source: str

    def to_dict(self) -> dict:
        d = self._asdict()
        d["out_dir"] = str(self.out_dir)
        return d


def check_unique_ids(ids: Sequence[str], locations: Sequence[int], source: str, field: str = "item_id",
                     where: str = "line") -> None:
    """Raise on the first repeated id, naming both places it occurs."""
    first: dict[str, int] = {}
    for value, loc in zip(ids, locations):
        if value in first:
            raise DataContractError(
                f"{source}: {where} {loc}: field {field}: duplicated id {value!r} (first seen at {where} {first[value]})"
            )
        first[value] = loc


def resolve_unknown_items(
    interactions: pa.Table,
    catalog_ids: pa.ChunkedArray | pa.Array,
    policy: Literal["drop", "fail"],
    source: str,
    locations: np.ndarray | None = None,
    where: str = "line",
    place: Callable[[int], str] | None = None,
) -> tuple[pa.Table, np.ndarray | None, int]:
    """Drop (and count) or reject interactions whose item is absent from the catalog.

    ``locations`` maps each interaction to its place in the source (a line number); without it ``place``
    names the place of a row (e.g. a CSV line), else the message names the 0-based row of the table.
    """
    ids = catalog_ids.combine_chunks() if isinstance(catalog_ids, pa.ChunkedArray) else catalog_ids
    known = pc.is_in(interactions["item_id"], value_set=ids)
    known_np = known.to_numpy(zero_copy_only=False).astype(bool)
    unknown = int((~known_np).sum())
    if unknown == 0:
        return interactions, locations, 0
    if policy == "fail":
        row = int(np.argmin(known_np))
        if locations is not None:
            at = f"{where} {int(locations[row])}"
        else:
            at = place(row) if place is not None else f"row {row}"
        item = interactions["item_id"][row].as_py()
        raise DataContractError(
            f"{source}: {at}: field item_id: unknown item {item!r} is not in the catalog "
            f"({unknown} interactions name unknown items; set data.unknown_items=drop to drop them)"
        )
    if policy != "drop":
        raise ValueError(f"data.unknown_items must be 'drop' or 'fail', not {policy!r}")
    kept = interactions.filter(pa.array(known_np))
    if kept.num_rows == 0:
        raise DataContractError(f"{source}: no interaction names an item of the catalog ({unknown} unknown)")
    return kept, (locations[known_np] if locations is not None else None), unknown


def write_import(
    out_dir: str | Path,
    catalog: pa.Table,
    interactions: pa.Table,
    *,
    unknown_items: Literal["drop", "fail"],
    catalog_source: str,
    interactions_source: str,
    locations: np.ndarray | None = None,
    where: str = "line",
    catalog_place: Callable[[int], str] | None = None,
    interactions_place: Callable[[int], str] | None = None,
) -> ImportSummary:
    """Conform, resolve unknown items, and write ``catalog.parquet`` + ``interactions.parquet`` atomically.

    ``*_place`` name the place of a 0-based table row in its source file (a CSV line, say) for messages.
    """
    catalog = conform_catalog(catalog, catalog_source, catalog_place)
    interactions = conform_interactions(interactions, interactions_source, interactions_place)
    interactions, _, dropped = resolve_unknown_items(
        interactions, catalog["item_id"], unknown_items, interactions_source, locations, where, interactions_place
    )
    used = pc.unique(interactions["item_id"])
    summary = ImportSummary(
        out_dir=Path(out_dir),
        items=catalog.num_rows,
        users=len(pc.unique(interactions["user_id"])),
        interactions=interactions.num_rows,
        dropped_unknown=dropped,
        items_without_interactions=catalog.num_rows - len(used),
        source=f"{catalog_source} + {interactions_source}" if catalog_source != interactions_source else catalog_source,
    )
    with atomic_dir(out_dir) as tmp:
        pq.write_table(catalog, tmp / CATALOG_FILE)
        pq.write_table(interactions, tmp / INTERACTIONS_FILE)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    return summary
