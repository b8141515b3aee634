"""What each pipeline stage hands on: one typed record per stage, plain JSON (an Airflow XCom, a stage record).

The orchestrator owns the paths: a stage reads the paths it needs from its upstream stages' outputs and
passes them to the stage library, which never re-derives them from the run folder's layout. Each record
names the paths a later stage reads, so the channel a path travels is written here, once.
"""
from __future__ import annotations

from typing import NotRequired, TypedDict

# The nightly DAG's tasks, in order, spelled here once: the stage functions (``stages.STAGE_FUNCTIONS``),
# ``unisem stage`` and the DAG's task ids are these names. The report reads the records of all but itself.
STAGES: tuple[str, ...] = (
    "validate", "proceed", "features", "embed", "train", "evaluate", "register", "promote", "recommend", "report",
)


class Validated(TypedDict):
    run_id: str
    catalog: str
    interactions: str
    verdict: str  # pass | warn | fail
    reasons: list[str]  # unisem.quality.gate.gate_reasons
    verdict_path: str  # verdict.json
    report_path: str  # report.html


class Proceeding(TypedDict):
    proceed: bool  # False: the verdict stops the run before any training
    verdict: str
    reasons: list[str]


class Featured(TypedDict):
    features_dir: str
    previous: str | None  # the earlier run's features whose id vocabularies were kept
    items: int | None
    users: int | None
    verdict_path: str | None  # the verdict of the data the features were built from


class Embedded(TypedDict):
    embeddings_dir: str


class Trained(TypedDict):
    model_dir: str
    best_epoch: int
    best_metrics: dict[str, float]
    history_path: str  # per-epoch records, JSON (they outgrow an XCom)
    # What the model was trained on: registration logs these as the run's inputs.
    features_dir: str
    embeddings_dir: str
    verdict_path: str | None
    tracking_run_id: str | None  # the MLflow run the epochs were logged into live (None: MLflow was down)
    ray_job_id: NotRequired[str]


class Evaluated(TypedDict):
    metrics_path: str  # metrics.json: the evaluation report
    evaluation_dir: str  # metrics.json and its plots
    metrics: dict[str, float]  # the report's own flat metrics, ``{"full/NDCG@10": ...}``


class Registered(TypedDict):
    model_name: str
    version: str
    model_uri: str
    mlflow_run_id: str
    tracking_uri: str
    reused: bool
    replaced: list[str]
    run_url: str | None
    version_url: str | None
