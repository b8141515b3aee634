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


@pytest.fixture
def single_thread(monkeypatch):
    """One torch thread and a fixed seed: the test models are tiny, and on a busy 2-core machine a second
    thread mostly waits; a fixed seed makes them repeatable."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
