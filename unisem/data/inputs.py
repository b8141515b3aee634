"""The contract inputs (catalog and interaction log Parquet) read on Spark, typed by ``unisem.data.contract``.

Both Spark jobs start here: the quality gate measures these DataFrames and the feature job builds from them,
so each sees the same columns and types, and neither has to know the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from unisem.data.contract import (
    CATALOG_REQUIRED,
    CATALOG_SCHEMA,
    INTERACTIONS_REQUIRED,
    INTERACTIONS_SCHEMA,
    DataContractError,
    check_columns,
    check_order_column,
    spark_columns,
)
from unisem.data.spark import spark_error_summary, spark_errors

CATALOG_COLUMNS = spark_columns(CATALOG_SCHEMA)
INTERACTION_COLUMNS = spark_columns(INTERACTIONS_SCHEMA)


class SparkInputs(NamedTuple):
    catalog: "object"  # pyspark DataFrame in CATALOG_COLUMNS
    interactions: "object"  # pyspark DataFrame in INTERACTION_COLUMNS


def read_parquet(spark, path: Path, what: str):
    """A Parquet file or part-file folder as a DataFrame; unreadable input names the file."""
    path = Path(path)
    if not path.exists():
        raise DataContractError(f"{path}: the {what} file does not exist")
    try:
        return spark.read.parquet(str(path))
    except spark_errors() as exc:
        raise DataContractError(f"{path}: cannot read the {what} as Parquet: {spark_error_summary(exc)}") from exc


def conform(df, columns: dict[str, str], required: tuple[str, ...], source: Path):
    """Select the contract columns with their types; absent optional ones become nulls.

    Casting happens lazily in Spark; a value that cannot be cast surfaces when the job runs and is reported
    with the file name by the caller.
    """
    from pyspark.sql import functions as F

    check_columns(df.columns, source, required)
    cols = []
    for name, typ in columns.items():
        if name in df.columns:
            cols.append(F.col(name).cast(typ).alias(name))
        else:
            cols.append(F.lit(None).cast(typ).alias(name))
    return df.select(*cols)


def read_inputs(spark, catalog: Path, interactions: Path) -> SparkInputs:
    cat = conform(read_parquet(spark, catalog, "catalog"), CATALOG_COLUMNS, CATALOG_REQUIRED, catalog)
    raw = read_parquet(spark, interactions, "interactions")
    check_order_column(raw.columns, interactions)
    inter = conform(raw, INTERACTION_COLUMNS, INTERACTIONS_REQUIRED, interactions)
    return SparkInputs(cat, inter)
