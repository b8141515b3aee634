"""The research "sequence file" format (e.g. ../shared/data/amazon-beauty): ``sequences.txt`` + ``items.jsonl``.

``sequences.txt`` holds one user per line, ``user item item ...`` in chronological order and no timestamps,
so the order on the line becomes the ``position`` column. ``items.jsonl`` holds one item per line; its
``text`` field is the ready-made item text (the paper's exact text) and is kept as such.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from unisem.data.contract import CATALOG_SCHEMA, INTERACTIONS_SCHEMA, DataContractError, contract_table
from unisem.data.importers.lines import numbered_lines, records
from unisem.data.importers.output import ImportSummary, check_output_path, check_unique_ids, write_import

SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"


def _optional_str(value, path: Path, number: int, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataContractError(f"{path}: line {number}: field {field}: expected a string, got {type(value).__name__}")


def read_items(path: Path) -> pa.Table:
    ids, lines, titles, brands, descriptions, categories, prices, texts = [], [], [], [], [], [], [], []
    for number, rec in records(path):
        if rec.get("item_id") in (None, ""):
            raise DataContractError(f"{path}: line {number}: field item_id is missing")
        ids.append(str(rec["item_id"]))
        lines.append(number)
        titles.append(_optional_str(rec.get("title"), path, number, "title"))
        brands.append(_optional_str(rec.get("brand"), path, number, "brand"))
        descriptions.append(_optional_str(rec.get("description"), path, number, "description"))
        texts.append(_optional_str(rec.get("text"), path, number, "text"))
        cats = rec.get("categories")
        if cats is not None and not (isinstance(cats, list) and all(isinstance(c, str) for c in cats)):
            raise DataContractError(f"{path}: line {number}: field categories: expected a list of strings")
        categories.append(cats)
        price = rec.get("price")
        if price is not None:
            try:
                price = float(price)
            except (TypeError, ValueError):
                raise DataContractError(f"{path}: line {number}: field price: not a number: {price!r}") from None
        prices.append(price)
    check_unique_ids(ids, lines, str(path))
    return contract_table(
        CATALOG_SCHEMA,
        {
            "item_id": ids,
            "title": titles,
            "description": descriptions,
            "brand": brands,
            "categories": categories,
            "price": prices,
            "text": texts,
        },
    )


def read_sequences(path: Path) -> tuple[pa.Table, np.ndarray]:
    """The interactions table and, per row, the line it came from."""
    users, items, positions, lines = [], [], [], []
    first_line: dict[str, int] = {}
    for number, text in numbered_lines(path):
        tokens = text.split()
        user = tokens[0]
        if user in first_line:
            raise DataContractError(
                f"{path}: line {number}: field user_id: user {user!r} already has a sequence at line {first_line[user]}"
            )
        first_line[user] = number
        if len(tokens) < 2:
            raise DataContractError(f"{path}: line {number}: user {user!r} has no items after the user id")
        seq = tokens[1:]
        users.extend([user] * len(seq))
        items.extend(seq)
        positions.extend(range(len(seq)))
        lines.extend([number] * len(seq))
    table = contract_table(
        INTERACTIONS_SCHEMA,
        {
            "user_id": users,
            "item_id": items,
            "position": positions,
        },
    )
    return table, np.asarray(lines, dtype=np.int64)


def import_sequence_files(
    source_dir: str | Path,
    out_dir: str | Path,
    unknown_items: Literal["drop", "fail"] = "drop",
    sequences_file: str = SEQUENCES_FILE,
    items_file: str = ITEMS_FILE,
    replace: bool = False,
) -> ImportSummary:
    """Import ``source_dir/sequences.txt`` + ``source_dir/items.jsonl`` into ``out_dir``.

    ``out_dir`` is checked first (``check_output_path``): never inside the source folder, never a stranger's folder.
    """
    source_dir = Path(source_dir)
    check_output_path(out_dir, (source_dir,), replace)
    if not source_dir.is_dir():
        raise DataContractError(f"{source_dir}: not a folder (expected {sequences_file} and {items_file} in it)")
    items_path, seq_path = source_dir / items_file, source_dir / sequences_file
    catalog = read_items(items_path)
    interactions, lines = read_sequences(seq_path)
    return write_import(
        out_dir,
        catalog,
        interactions,
        unknown_items=unknown_items,
        catalog_source=str(items_path),
        interactions_source=str(seq_path),
        locations=lines,
    )
