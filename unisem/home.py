"""Where unisem keeps its outputs, and the file layout every stage reads and writes.

Stages talk through files, so the layout is the contract between them: a stage is given a run folder and
finds its inputs and writes its outputs at the paths below, which makes each stage runnable (and
re-runnable) alone and lets the DAG pass paths rather than data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def unisem_home() -> Path:
    """``$UNISEM_HOME``, or ``.unisem/`` in the working directory."""
    return Path(os.environ.get("UNISEM_HOME") or Path.cwd() / ".unisem").resolve()


def demo_data_dir(home: Path | None = None) -> Path:
    return (home or unisem_home()) / "data" / "demo"


def embedding_cache_dir(home: Path | None = None) -> Path:
    return (home or unisem_home()) / "cache" / "embeddings"


def published_recommendations_dir(home: Path | None = None) -> Path:
    """The stable place the latest nightly recommendations are published to (what a website reads)."""
    return (home or unisem_home()) / "published" / "recommendations"


def default_tracking_uri(home: Path | None = None) -> str:
    return "sqlite:///" + str((home or unisem_home()) / "mlflow.db")


@dataclass(frozen=True)
class RunLayout:
    """The folders of one pipeline run (one logical date): ``<home>/runs/<run_id>/...``."""

    root: Path

    @classmethod
    def for_run(cls, run_id: str, home: Path | None = None) -> "RunLayout":
        return cls((home or unisem_home()) / "runs" / run_id)

    @property
    def quality(self) -> Path:
        """verdict.json, report.html, data_docs/ (unisem.quality)."""
        return self.root / "quality"

    @property
    def features(self) -> Path:
        """items/, users/, sequences/, cold_items/ Parquet and manifest.json (unisem.data.features)."""
        return self.root / "features"

    @property
    def embeddings(self) -> Path:
        """item_embeddings.safetensors aligned to the item vocabulary, and its meta JSON (unisem.text)."""
        return self.root / "embeddings"

    @property
    def training(self) -> Path:
        """Checkpoints, Ray run folders and the best model, ``training/model`` (unisem.train)."""
        return self.root / "training"

    @property
    def evaluation(self) -> Path:
        """metrics.json and plots (unisem.evaluate)."""
        return self.root / "evaluation"

    @property
    def registry(self) -> Path:
        """registration.json and promotion.json (unisem.registry)."""
        return self.root / "registry"

    @property
    def recommendations(self) -> Path:
        """Top-K per user by the champion, Parquet (unisem.registry.batch)."""
        return self.root / "recommendations"

    @property
    def pipeline(self) -> Path:
        """One JSON record per finished (or failed) pipeline stage of this run (unisem.pipeline)."""
        return self.root / "pipeline"

    @property
    def report(self) -> Path:
        """The run summary: summary.json, summary.md, summary.html (unisem.pipeline)."""
        return self.root / "report"
