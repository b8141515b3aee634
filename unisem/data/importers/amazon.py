"""Raw Amazon review dumps (McAuley et al.), the 2014 and the 2018 releases, plain or gzipped.

Both releases have a reviews file (one JSON object per line: ``reviewerID``, ``asin``, ``unixReviewTime``)
and a metadata file (one product per line). They differ in the metadata:

- 2014: lines are *Python* dict literals (single quotes), parsed with ``ast.literal_eval`` (never ``eval``);
  ``categories`` is a list of category paths (we keep the first), ``price`` a number, ``description`` a string.
- 2018: strict JSON; ``category`` is one path, ``price`` a string like ``"$12.99"`` (ranges keep their low
  end, anything else unparsable becomes null: the dump is full of HTML there), ``description`` a list.

Reviews carry day-granular timestamps, so a user's same-day reviews are ordered by their line in the
reviews file (``position``), which the feature job uses to break timestamp ties.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from unisem.data.contract import CATALOG_SCHEMA, INTERACTIONS_SCHEMA, DataContractError, contract_table
from unisem.data.importers.lines import records
from unisem.data.importers.output import ImportSummary, check_output_path, check_unique_ids, write_import

Style = Literal["auto", "2014", "2018"]
_PRICE = re.compile(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)(?:\s*-\s*\$?\s*[0-9][0-9,]*(?:\.[0-9]+)?)?$")
_REVIEW_DATE = re.compile(r"^(\d{1,2}) (\d{1,2}), (\d{4})$")


def parse_price(value: Any) -> float | None:
    """``12.99``, ``"$12.99"``, ``"$1,299.00"`` or ``"$5.99 - $9.99"`` (low end); null for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = _PRICE.match(str(value).strip())
    return float(m.group(1).replace(",", "")) if m else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(str(v).strip() for v in value if v is not None and str(v).strip())
    value = str(value).strip()
    return value or None


def _category_path(rec: dict[str, Any], style: str) -> list[str] | None:
    if style == "2014":
        cats = rec.get("categories")
        if isinstance(cats, list) and cats and isinstance(cats[0], list):
            cats = cats[0]
    else:
        cats = rec.get("category")
    if not isinstance(cats, list):
        return None
    path = [str(c).strip() for c in cats if c is not None and str(c).strip()]
    return path or None


def detect_style(first: dict[str, Any]) -> str:
    if "categories" in first or "related" in first or "salesRank" in first:
        return "2014"
    return "2018"


def read_metadata(path: Path, style: Style = "auto", duplicates: Literal["fail", "first"] = "fail") -> pa.Table:
    ids, lines, titles, descriptions, brands, categories, prices = [], [], [], [], [], [], []
    seen: set[str] = set()
    resolved = None if style == "auto" else style
    for number, rec in records(path, python_literals=True):
        if resolved is None:
            resolved = detect_style(rec)
        asin = rec.get("asin")
        if asin in (None, ""):
            raise DataContractError(f"{path}: line {number}: field asin is missing")
        asin = str(asin)
        if asin in seen and duplicates == "first":
            continue  # the 2018 dumps repeat some products verbatim
        seen.add(asin)
        ids.append(asin)
        lines.append(number)
        titles.append(_text(rec.get("title")))
        descriptions.append(_text(rec.get("description")))
        brands.append(_text(rec.get("brand")))
        categories.append(_category_path(rec, resolved))
        prices.append(parse_price(rec.get("price")))
    check_unique_ids(ids, lines, str(path), field="asin")
    return contract_table(
        CATALOG_SCHEMA,
        {
            "item_id": ids,
            "title": titles,
            "description": descriptions,
            "brand": brands,
            "categories": categories,
            "price": prices,
        },
    )


def _review_time(rec: dict[str, Any], path: Path, number: int) -> int:
    """Seconds since the epoch from ``unixReviewTime`` (or, when absent, ``reviewTime`` "MM DD, YYYY")."""
    raw = rec.get("unixReviewTime")
    if raw is None and isinstance(rec.get("reviewTime"), str):
        m = _REVIEW_DATE.match(rec["reviewTime"].strip())
        if m:
            month, day, year = (int(g) for g in m.groups())
            try:
                return int(dt.datetime(year, month, day, tzinfo=dt.timezone.utc).timestamp())
            except ValueError:
                pass
        raise DataContractError(
            f"{path}: line {number}: field reviewTime: unparsable date {rec['reviewTime']!r} (expected 'MM DD, YYYY')"
        )
    if raw is None:
        raise DataContractError(f"{path}: line {number}: field unixReviewTime is missing")
    if isinstance(raw, bool):
        raise DataContractError(f"{path}: line {number}: field unixReviewTime: unparsable timestamp {raw!r}")
    try:
        value = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
    except (TypeError, ValueError):
        value = None
    if value is None or value < 0 or value > 10**11:
        raise DataContractError(f"{path}: line {number}: field unixReviewTime: unparsable timestamp {raw!r}")
    return value


def read_reviews(path: Path) -> tuple[pa.Table, np.ndarray]:
    users, items, times, lines = [], [], [], []
    for number, rec in records(path, python_literals=True):
        for field in ("reviewerID", "asin"):
            if rec.get(field) in (None, ""):
                raise DataContractError(f"{path}: line {number}: field {field} is missing")
        users.append(str(rec["reviewerID"]))
        items.append(str(rec["asin"]))
        times.append(_review_time(rec, path, number))
        lines.append(number)
    table = contract_table(
        INTERACTIONS_SCHEMA,
        {
            "user_id": users,
            "item_id": items,
            "timestamp": np.asarray(times, dtype=np.int64) * 1_000_000,
            "position": lines,
        },
    )
    return table, np.asarray(lines, dtype=np.int64)


def import_amazon(
    reviews: str | Path,
    metadata: str | Path,
    out_dir: str | Path,
    style: Style = "auto",
    unknown_items: Literal["drop", "fail"] = "drop",
    duplicates: Literal["fail", "first"] = "fail",
    replace: bool = False,
) -> ImportSummary:
    """Import an Amazon reviews file and its metadata file into ``out_dir`` (the data contract).

    ``out_dir`` is checked first (``check_output_path``): never an input, never a stranger's folder.
    """
    check_output_path(out_dir, (reviews, metadata), replace)
    if style not in ("auto", "2014", "2018"):
        raise ValueError(f"style must be 'auto', '2014' or '2018', not {style!r}")
    reviews, metadata = Path(reviews), Path(metadata)
    catalog = read_metadata(metadata, style, duplicates)
    interactions, lines = read_reviews(reviews)
    return write_import(
        out_dir,
        catalog,
        interactions,
        unknown_items=unknown_items,
        catalog_source=str(metadata),
        interactions_source=str(reviews),
        locations=lines,
    )
