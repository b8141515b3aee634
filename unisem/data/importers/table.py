"""Generic tables (CSV / TSV, Parquet, JSON lines) with a column mapping onto the data contract.

A mapping says which source column holds which contract field: ``user_id=uid``, ``item_id=sku``. A key may
be limited to one file (``catalog.item_id=sku``, ``interactions.item_id=product``); an unprefixed key
applies to both files. Contract fields that are not mapped are taken from a column of the same name when
there is one. Timestamps may be numbers (epoch, in ``timestamp_unit``), ISO 8601 strings (naive ones are
UTC) or Parquet timestamps; a CSV category path is one string split on ``category_separator``.

Messages name the place a user can find: ``line N`` of a CSV / TSV / JSON-lines file (1-based, a CSV's
header is line 1) and ``row N`` of a Parquet table (1-based, first row = row 1).

Ids are text, by one rule in every format: a whole number written with a decimal point (``5.0``: a float
column in Parquet or JSON, or a CSV written from one) is the id ``5``; everything else is kept as written,
leading zeros included (``007``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from unisem.data.contract import CATALOG_SCHEMA, INTERACTIONS_SCHEMA, DataContractError
from unisem.data.importers.lines import (
    check_readable,
    first_invalid_utf8_line,
    is_gzip,
    numbered_lines,
    parse_record,
)
from unisem.data.importers.output import ImportSummary, check_output_path, write_import

TABLES = ("catalog", "interactions")
FIELDS = {"catalog": tuple(CATALOG_SCHEMA.names), "interactions": tuple(INTERACTIONS_SCHEMA.names)}
TimestampUnit = Literal["s", "ms", "us"]
Place = Callable[[int], str]
# "5.0", "-12.000": a whole number written as a float; the id is the part before the point.
_WHOLE_FLOAT = re.compile(r"^([+-]?[0-9]+)\.0+$")


def parse_mapping(entries: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["user_id=uid", "catalog.item_id=sku"]`` -> ``{"catalog": {...}, "interactions": {...}}``."""
    out: dict[str, dict[str, str]] = {"catalog": {}, "interactions": {}}
    for entry in entries:
        if "=" not in entry:
            raise ValueError(f"--map {entry!r}: expected FIELD=COLUMN, e.g. user_id=uid or catalog.item_id=sku")
        key, column = (s.strip() for s in entry.split("=", 1))
        table, _, field = key.rpartition(".")
        targets = (table,) if table else TABLES
        if table and table not in TABLES:
            raise ValueError(f"--map {entry!r}: {table!r} is not a table; use catalog.FIELD or interactions.FIELD")
        if not column:
            raise ValueError(f"--map {entry!r}: the column name is empty")
        valid = [t for t in targets if field in FIELDS[t]]
        if not valid:
            allowed = sorted(set(FIELDS["catalog"]) | set(FIELDS["interactions"]))
            raise ValueError(f"--map {entry!r}: unknown field {field!r}; contract fields: {', '.join(allowed)}")
        for t in valid:
            out[t][field] = column
    return out


def _format(path: Path) -> str:
    if path.is_dir():
        if not any(p.is_file() and not p.name.startswith((".", "_")) and p.suffix in (".parquet", ".pq")
                   for p in path.rglob("*")):
            raise DataContractError(
                f"{path}: is a folder, not a file (a folder is read only as Parquet part files, and it holds none)"
            )
        return "parquet"
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet"), (".pq", "parquet"),
                        (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl")):
        if name.endswith(suffix):
            return fmt
    raise DataContractError(f"{path}: unknown table format; use .csv, .tsv, .parquet, .jsonl/.json (optionally .gz)")


def row_place(path: str | Path) -> Place:
    """The place of 0-based table row ``r`` of ``path`` as a user finds it: ``line N`` or ``row N`` (1-based).

    A CSV row is one line (values cannot span lines) and blank lines are skipped by the reader, so the line
    is found by counting non-blank lines; this reads the file again, but only when a message needs it.
    """
    path = Path(path)
    fmt = _format(path)
    if fmt == "parquet":
        return lambda row: f"row {row + 1}"
    skip = 1 if fmt in ("csv", "tsv") else 0  # the header

    def place(row: int) -> str:
        import gzip

        opener = gzip.open if is_gzip(path) else open
        seen = -skip
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for number, raw in enumerate(fh, start=1):
                if raw.strip():
                    if seen == row:
                        return f"line {number}"
                    seen += 1
        return f"data row {row + 1}"

    return place


def _first_bad_json_line(path: Path) -> None:
    for number, text in numbered_lines(path):
        parse_record(text, path, number)


def read_any(path: str | Path, string_columns: Iterable[str] = ()) -> pa.Table:
    """Read a CSV/TSV, Parquet (file or folder of parts) or JSON-lines file into Arrow.

    ``string_columns`` are read as text in CSV, so ids such as "007" are not turned into the number 7.
    """
    path = Path(path)
    if not path.is_dir():
        check_readable(path)
    fmt = _format(path)
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        elif fmt in ("csv", "tsv"):
            table = pcsv.read_csv(
                path,
                parse_options=pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
                # Ids stay strings even when they look like numbers ("007" must not become 7).
                convert_options=pcsv.ConvertOptions(
                    strings_can_be_null=True, column_types={c: pa.string() for c in string_columns}
                ),
            )
        else:
            table = pjson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        if fmt == "jsonl":
            _first_bad_json_line(path)  # raises with the line number when a line is broken
        if fmt in ("csv", "tsv") and "UTF8" in str(exc).upper().replace("-", ""):
            first_invalid_utf8_line(path)  # raises with the line number of the first invalid byte
        raise DataContractError(f"{path}: cannot read as {fmt}: {exc}") from exc
    if fmt in ("csv", "tsv") and any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        first_invalid_utf8_line(path)  # the reader keeps non-UTF-8 text as bytes; name the line
    if table.num_rows == 0:
        raise DataContractError(f"{path}: the file has no rows")
    return table


def _first_failing(values: list, convert) -> tuple[int, object] | None:
    for row, value in enumerate(values):
        if value is None:
            continue
        try:
            convert(value)
        except (TypeError, ValueError, OverflowError):
            return row, value
    return None


def canonical_ids(column: pa.ChunkedArray, source: str, name: str, place: Place) -> pa.ChunkedArray:
    """Ids as text by the module's one rule: a whole number written as a float (``5.0``) is ``5``."""
    t = column.type
    if pa.types.is_floating(t):
        col = column.combine_chunks()
        finite = pc.is_finite(col)
        if not pc.all(pc.or_kleene(finite, pc.is_null(col))).as_py():
            row = int(pc.index(pc.invert(finite), True).as_py())
            raise DataContractError(f"{source}: {place(row)}: field {name}: {col[row].as_py()!r} is not an id")
        # Whole and exactly representable (|x| < 2**53): beyond that a float is no longer one integer.
        whole = pc.and_(pc.equal(pc.floor(col), col), pc.less(pc.abs(col), 2.0 ** 53))
        as_int = pc.if_else(whole, col, pa.scalar(0.0, t)).cast(pa.int64()).cast(pa.string())
        return pa.chunked_array([pc.if_else(whole, as_int, col.cast(pa.string()))])
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return column.cast(pa.string())
    return pa.chunked_array([pc.replace_substring_regex(column.combine_chunks().cast(pa.string()),
                                                        _WHOLE_FLOAT.pattern, r"\1")])


def _timestamps(column: pa.ChunkedArray, unit: TimestampUnit, source: str, name: str, place: Place) -> pa.Array:
    import pandas as pd

    t = column.type
    if pa.types.is_timestamp(t):
        col = column.combine_chunks()
        if t.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return col.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        us = np.rint(values * scale)
        bad = ~np.isfinite(us) & ~np.isnan(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataContractError(f"{source}: {place(row)}: field {name}: unparsable timestamp {values[row]!r}")
        mask = np.isnan(values)
        return pa.array(np.where(mask, 0, us).astype(np.int64), pa.timestamp("us", tz="UTC"), mask=mask)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        series = pd.Series(column.to_pylist(), dtype=object)
        parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna() & series.notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataContractError(
                f"{source}: {place(row)}: field {name}: unparsable timestamp {series[row]!r} (expected ISO 8601 or epoch)"
            )
        return pa.array(parsed.dt.as_unit("us"), pa.timestamp("us", tz="UTC"))
    raise DataContractError(f"{source}: field {name}: cannot read {t} as a timestamp")


def _select(table: pa.Table, kind: str, mapping: Mapping[str, str], source: str) -> pa.Table:
    """Rename mapped source columns to contract names and keep only contract fields."""
    columns: dict[str, pa.ChunkedArray] = {}
    for field in FIELDS[kind]:
        column = mapping.get(field)
        if column is not None:
            if column not in table.column_names:
                raise DataContractError(
                    f"{source}: missing column {column!r} (mapped to {field}); found: {', '.join(table.column_names)}"
                )
            columns[field] = table[column]
        elif field in table.column_names:
            columns[field] = table[field]
    return pa.table(columns) if columns else pa.table({})


def _normalise_catalog(table: pa.Table, source: str, category_separator: str, place: Place) -> pa.Table:
    if "item_id" in table.column_names:
        table = table.set_column(table.schema.get_field_index("item_id"), "item_id",
                                 canonical_ids(table["item_id"], source, "item_id", place))
        first: dict[str, int] = {}
        for row, value in enumerate(table["item_id"].to_pylist()):
            if value in first:
                raise DataContractError(f"{source}: {place(row)}: field item_id: duplicated id {value!r}"
                                        f" (first seen at {place(first[value])})")
            first[value] = row
    if "categories" in table.column_names:
        col = table["categories"]
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            paths = [
                [p.strip() for p in v.split(category_separator) if p.strip()] if v is not None else None
                for v in col.to_pylist()
            ]
            table = table.set_column(
                table.schema.get_field_index("categories"), "categories", pa.array(paths, pa.list_(pa.string()))
            )
    if "price" in table.column_names and not pa.types.is_floating(table["price"].type):
        values = table["price"].to_pylist()

        def to_float(v):
            return float(str(v).strip().lstrip("$").replace(",", "")) if str(v).strip() else None

        bad = _first_failing(values, to_float)
        if bad:
            raise DataContractError(f"{source}: {place(bad[0])}: field price: not a number: {bad[1]!r}")
        table = table.set_column(
            table.schema.get_field_index("price"),
            "price",
            pa.array([to_float(v) if v is not None else None for v in values], pa.float64()),
        )
    return table


def _normalise_interactions(table: pa.Table, source: str, unit: TimestampUnit, place: Place) -> pa.Table:
    for name in ("user_id", "item_id"):
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name,
                                     canonical_ids(table[name], source, name, place))
    if "timestamp" in table.column_names:
        table = table.set_column(
            table.schema.get_field_index("timestamp"), "timestamp",
            _timestamps(table["timestamp"], unit, source, "timestamp", place),
        )
    if "position" in table.column_names and not pa.types.is_integer(table["position"].type):
        values = table["position"].to_pylist()
        bad = _first_failing(values, lambda v: int(str(v)))
        if bad:
            raise DataContractError(f"{source}: {place(bad[0])}: field position: not an integer: {bad[1]!r}")
        table = table.set_column(
            table.schema.get_field_index("position"), "position",
            pa.array([int(str(v)) if v is not None else None for v in values], pa.int64()),
        )
    return table


def import_tables(
    catalog: str | Path,
    interactions: str | Path,
    out_dir: str | Path,
    mapping: Mapping[str, Mapping[str, str]] | Iterable[str] = (),
    unknown_items: Literal["drop", "fail"] = "drop",
    timestamp_unit: TimestampUnit = "s",
    category_separator: str = "|",
    replace: bool = False,
) -> ImportSummary:
    """Import a catalog table and an interactions table (any supported format) into ``out_dir``.

    ``out_dir`` must not be, hold or lie inside an input, and replaces an existing folder only when that
    is an earlier import or ``replace`` is set (``check_output_path``).
    """
    check_output_path(out_dir, (catalog, interactions), replace)
    if not isinstance(mapping, Mapping):
        mapping = parse_mapping(mapping)
    if timestamp_unit not in ("s", "ms", "us"):
        raise ValueError(f"timestamp_unit must be 's', 'ms' or 'us', not {timestamp_unit!r}")
    catalog, interactions = Path(catalog), Path(interactions)
    cat_map, inter_map = mapping.get("catalog", {}), mapping.get("interactions", {})
    cat = _select(read_any(catalog, [cat_map.get("item_id", "item_id")]), "catalog", mapping.get("catalog", {}), str(catalog))
    cat_place, inter_place = row_place(catalog), row_place(interactions)
    cat = _normalise_catalog(cat, str(catalog), category_separator, cat_place)
    ids = [inter_map.get(f, f) for f in ("user_id", "item_id")]
    inter = _select(read_any(interactions, ids), "interactions", mapping.get("interactions", {}), str(interactions))
    inter = _normalise_interactions(inter, str(interactions), timestamp_unit, inter_place)
    return write_import(
        out_dir,
        cat,
        inter,
        unknown_items=unknown_items,
        catalog_source=str(catalog),
        interactions_source=str(interactions),
        catalog_place=cat_place,
        interactions_place=inter_place,
    )
