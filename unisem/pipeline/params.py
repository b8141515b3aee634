"""The run parameters of the DAGs, defined once: ``spec.spec_from_context`` reads these same names.

Called by the DAG files only: Airflow's SDK is imported when ``run_params`` is called, never by importing
this module, so the library (and ``spec.py``, which maps these names onto config keys) does not need
Airflow installed. Defaults that name services come from the deployment's environment
(docker/docker-compose.yml sets them), an empty value leaves the config's.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Param


def run_params(*names: str) -> dict[str, "Param"]:
    """Fresh ``Param`` objects for ``names`` (all of them when none is given), in a stable order."""
    from airflow.sdk import Param

    env = os.environ.get
    params = {
        "config_file": Param(env("UNISEM_CONFIG", ""), type="string", description="unisem YAML config (empty: built-in defaults)"),
        "catalog": Param("", type="string", description="catalog Parquet (empty: data.catalog, else the demo data)"),
        "interactions": Param("", type="string", description="interactions Parquet file or folder (with catalog)"),
        "spark_master": Param(env("SPARK_MASTER", ""), type="string",
                              description="e.g. spark://spark-master:7077 (empty: orchestration.spark_master)"),
        "ray_address": Param(env("RAY_ADDRESS", ""), type="string",
                             description="Ray dashboard for Ray Jobs, e.g. http://ray-head:8265 (empty: config)"),
        "mlflow_uri": Param(env("MLFLOW_TRACKING_URI", ""), type="string",
                            description="MLflow tracking URI (empty: registry.tracking_uri)"),
        "overrides": Param([], type="array", items={"type": "string"}, description="KEY=VALUE config overrides"),
    }
    unknown = set(names) - set(params)
    if unknown:
        raise ValueError(f"unknown DAG params {sorted(unknown)}; known: {', '.join(params)}")
    return {k: v for k, v in params.items() if not names or k in names}
