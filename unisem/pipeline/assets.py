"""The Airflow Assets the nightly DAG produces, named once so a downstream DAG schedules on the same one.

A downstream DAG (a cache loader, an e-mail campaign) writes ``schedule=[recommendations_asset()]`` and
runs each time the nightly ``recommend`` task has published a new batch. The URI is the stable published
folder (``<UNISEM_HOME>/published/recommendations``), resolved when the DAG file is parsed.
"""
from __future__ import annotations

from pathlib import Path

from unisem.home import published_recommendations_dir

RECOMMENDATIONS_ASSET = "unisem_recommendations"


def recommendations_uri(home: Path | None = None) -> str:
    return published_recommendations_dir(home).as_uri()


def recommendations_asset(home: Path | None = None):
    """``airflow.sdk.Asset`` of the published top-K Parquet (Airflow imported only here, on demand)."""
    from airflow.sdk import Asset

    return Asset(name=RECOMMENDATIONS_ASSET, uri=recommendations_uri(home), group="unisem")
