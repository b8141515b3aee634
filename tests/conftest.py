"""Shared test setup: an isolated UNISEM_HOME per test and the path to the shared Beauty data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
BEAUTY_DIR = REPO_ROOT.parent / "shared" / "data" / "amazon-beauty"


@pytest.fixture
def unisem_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "unisem-home"
    monkeypatch.setenv("UNISEM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def beauty_dir() -> Path:
    if not (BEAUTY_DIR / "sequences.txt").exists():
        pytest.skip(f"Amazon Beauty data not found at {BEAUTY_DIR} (it lives in ../shared, beside the repository)")
    return BEAUTY_DIR


@pytest.fixture(scope="session")
def spark():
    """One real local Spark session for the whole test session (starting one takes ~20 s)."""
    from unisem.data.spark import spark_session

    session = spark_session("local[2]", app="unisem-tests")
    session.conf.set("spark.sql.shuffle.partitions", "2")  # tiny test data: fewer, not emptier, tasks
    yield session
    session.stop()
