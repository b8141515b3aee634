"""The data contract: what a catalog and an interaction log look like on disk (Parquet) once imported.

Every importer produces exactly these schemas and every later stage (quality gate, features) reads them,
so formats from the outside world are dealt with once, at the edge.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("price", pa.float64()),
        # A ready-made item text; when present and non-empty it takes precedence over the template.
        pa.field("text", pa.string()),
    ]
)

# Order comes from ``timestamp`` when present, otherwise from ``position`` (per user, ascending).
INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("position", pa.int64()),
    ]
)

CATALOG_FILE = "catalog.parquet"
INTERACTIONS_FILE = "interactions.parquet"

# The columns a file must have to be read at all; the rest of each schema may be absent (read as nulls).
CATALOG_REQUIRED = ("item_id",)
INTERACTIONS_REQUIRED = ("user_id", "item_id")
# An interaction log needs at least one of these to order each user's events.
ORDER_COLUMNS = ("timestamp", "position")

# Arrow type -> Spark SQL type, for the types the contract uses: Spark reads the same files, and its column
# types are derived from the schemas above rather than written out a second time.
_SPARK_TYPES = {pa.string(): "string", pa.float64(): "double", pa.int64(): "bigint"}


def _spark_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return f"array<{_spark_type(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return "timestamp"  # Spark keeps instants in UTC (the session time zone is UTC, unisem.data.spark)
    if t in _SPARK_TYPES:
        return _SPARK_TYPES[t]
    raise TypeError(f"no Spark type for the contract type {t}")


def spark_columns(schema: pa.Schema) -> dict[str, str]:
    """The contract schema as Spark SQL types, column by column in schema order."""
    return {f.name: _spark_type(f.type) for f in schema}


def contract_table(schema: pa.Schema, columns: dict[str, object]) -> pa.Table:
    """Python sequences of some contract fields -> a table typed by ``schema`` (fields left out stay absent).

    Importers collect plain lists; the types come from the contract here, once, not at every call site.
    """
    return pa.table({name: pa.array(values, schema.field(name).type) for name, values in columns.items()})


class InputError(ValueError):
    """Input that cannot succeed however often it is retried (a missing file, bad rows, degenerate data).

    The pipeline fails such a stage at once instead of retrying it (``unisem.pipeline.records``).
    """


class DataContractError(InputError):
    """Input that does not fit the data contract; the message names the file, row and field."""


def _row(place: Callable[[int], str] | None, row: int) -> str:
    return place(row) if place is not None else f"row {row}"


def check_columns(columns: list[str], source: object, required: tuple[str, ...]) -> None:
    """Raise, naming ``source``, when a required column is absent (the Arrow and the Spark reader share it)."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataContractError(
            f"{source}: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            f" (found: {', '.join(columns) or 'none'})"
        )


def check_order_column(columns: list[str], source: object) -> None:
    if not any(c in columns for c in ORDER_COLUMNS):
        raise DataContractError(f"{source}: needs a timestamp or a position column to order each user's events")


_BAD_UTF8 = re.compile(r"Invalid UTF8 sequence at string index (\d+)")


def check_utf8(column: pa.ChunkedArray, name: str, source: str, place: Callable[[int], str] | None = None) -> None:
    """Raise naming the first row whose text is not valid UTF-8 (the row of a list column's bad element
    is not recoverable from Arrow's message: there the field is named).

    Parquet readers hand such bytes over as strings unchecked; they fail later, far from the file, as a
    bare UnicodeDecodeError (in Python) or as replacement characters (in Spark).
    """
    offset = 0
    for chunk in column.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowInvalid as exc:
            found = _BAD_UTF8.search(str(exc))
            if found is None:
                raise DataContractError(f"{source}: field {name}: {exc}") from exc
            row = offset + int(found.group(1))
            raise DataContractError(f"{source}: {_row(place, row)}: field {name}: the text is not valid UTF-8") from exc
        offset += len(chunk)


def _cast_columns(table: pa.Table, schema: pa.Schema, source: str,
                  place: Callable[[int], str] | None = None) -> list[pa.ChunkedArray | pa.Array]:
    """Every field of ``schema`` from ``table``, cast to its type; absent ones become nulls."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            check_utf8(table[f.name], f.name, source, place)
            try:
                columns.append(table[f.name].cast(f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataContractError(f"{source}: field {f.name}: cannot read as {f.type}: {exc}") from exc
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return columns


def _first_null_row(column: pa.ChunkedArray) -> int | None:
    if column.null_count == 0:
        return None
    return int(pc.index(pc.is_null(column), True).as_py())


def conform_catalog(table: pa.Table, source: str, place: Callable[[int], str] | None = None) -> pa.Table:
    """Cast ``table`` to ``CATALOG_SCHEMA`` (absent optional columns become nulls) and check its keys.

    ``place`` names a row's place in the source file for messages (default: ``row N``, 0-based).
    """
    check_columns(table.column_names, source, CATALOG_REQUIRED)
    if table.num_rows == 0:
        raise DataContractError(f"{source}: the catalog is empty")
    columns = _cast_columns(table, CATALOG_SCHEMA, source, place)
    out = pa.Table.from_arrays(columns, schema=CATALOG_SCHEMA.set(0, pa.field("item_id", pa.string())))
    row = _first_null_row(out["item_id"])
    if row is not None:
        raise DataContractError(f"{source}: {_row(place, row)}: field item_id is empty")
    counts = pc.value_counts(out["item_id"])
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        first = dup[0]["values"].as_py()
        row = int(pc.index(out["item_id"], first).as_py())
        raise DataContractError(
            f"{source}: {_row(place, row)}: field item_id: duplicated id {first!r} ({len(dup)} duplicated ids in all)"
        )
    return out.cast(CATALOG_SCHEMA)


def conform_interactions(table: pa.Table, source: str, place: Callable[[int], str] | None = None) -> pa.Table:
    """Cast ``table`` to ``INTERACTIONS_SCHEMA``; it needs an order column (timestamp or position)."""
    check_columns(table.column_names, source, INTERACTIONS_REQUIRED)
    check_order_column(table.column_names, source)
    if table.num_rows == 0:
        raise DataContractError(f"{source}: there are no interactions")
    columns = _cast_columns(table, INTERACTIONS_SCHEMA, source, place)
    out = pa.Table.from_arrays(columns, names=INTERACTIONS_SCHEMA.names)
    for name in INTERACTIONS_REQUIRED:
        row = _first_null_row(out[name])
        if row is not None:
            raise DataContractError(f"{source}: {_row(place, row)}: field {name} is empty")
    # A written file always has both columns; an all-null timestamp column means "ordered by position".
    has_time = "timestamp" in table.column_names and table["timestamp"].null_count < table.num_rows
    order = "timestamp" if has_time else "position"
    row = _first_null_row(out[order])
    if row is not None:
        raise DataContractError(f"{source}: {_row(place, row)}: field {order} is empty")
    return out.cast(INTERACTIONS_SCHEMA)


def _read_parquet(path: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataContractError(f"{path}: cannot read the {what} as Parquet: {exc}") from exc


def read_catalog(path: str | Path) -> pa.Table:
    path = Path(path)
    return conform_catalog(_read_parquet(path, "catalog"), str(path))


def read_interactions(path: str | Path) -> pa.Table:
    path = Path(path)
    return conform_interactions(_read_parquet(path, "interactions"), str(path))
