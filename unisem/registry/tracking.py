"""Where MLflow keeps runs and models, and what a training run logs there.

One function decides the tracking URI so that the CLI, the DAG and the tests always talk to the same store:
an explicit value, then ``MLFLOW_TRACKING_URI``, then the config file (``unisem.config.services``), then
SQLite under ``UNISEM_HOME`` (nothing to start by hand). A tracking server is checked before use and its
client's timeouts and retries come from ``orchestration.timeouts``.
For a local store the artifacts are kept beside the database, never in a ``./mlruns`` of whatever folder the
command happened to run in.
"""
from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from unisem.config import to_dict
from unisem.config.schema import UnisemConfig
from unisem.home import default_tracking_uri
from unisem.registry.versions import code_version, data_version, file_sha256

# The MLflow tag (on a training run and its model version) that ties it to the pipeline run that produced it.
RUN_ID_TAG = "pipeline_run_id"


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server does not answer; never to be read as "nothing registered"."""


def tracking_uri(cfg: UnisemConfig) -> str:
    """cfg.registry.tracking_uri (``load_config`` already put a ``MLFLOW_TRACKING_URI`` there, above the config
    file and below an explicit value), else ``$MLFLOW_TRACKING_URI``, else SQLite under ``UNISEM_HOME``."""
    return cfg.registry.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


# MLflow's HTTP client reads these on every request; set from orchestration.timeouts before any request, so a
# down server costs seconds, not MLflow's default of minutes of retries.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "mlflow_request_s",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "mlflow_max_retries",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "mlflow_backoff_factor",
}


def apply_http_settings(cfg: UnisemConfig) -> None:
    t = cfg.orchestration.timeouts
    for var, attr in _HTTP_ENV.items():
        value = getattr(t, attr)
        os.environ[var] = str(int(value)) if float(value).is_integer() else str(value)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0.5"


def check_server(uri: str, timeout_s: float) -> None:
    """An ``http(s)://`` tracking server must answer ``/health`` within ``timeout_s``; raise naming it if not."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TrackingUnavailable(f"MLflow tracking server at {uri} answered {exc.code} on /health") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailable(f"cannot reach the MLflow tracking server at {uri} (waited at most "
                                  f"{timeout_s:g}s): {getattr(exc, 'reason', exc)}") from exc


def local_artifact_root(uri: str) -> Path | None:
    """For a SQLite store, the folder beside the database that holds its artifacts; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent / "mlartifacts"
    return None


def configure(cfg: UnisemConfig) -> str:
    """Point the mlflow module (tracking and registry) at the configured store and return its URI."""
    import mlflow

    uri = tracking_uri(cfg)
    apply_http_settings(cfg)
    check_server(uri, cfg.orchestration.timeouts.service_connect_s)
    root = local_artifact_root(uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    # MLflow also writes the URI into MLFLOW_TRACKING_URI for subprocesses; the deployment's own value must
    # stay what it was, since that variable is an address source for every later load_config of this process.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return uri


def store_client(uri: str):
    """The one way an MlflowClient is made here: on ``uri`` for both tracking and registry.

    Always both: ``MlflowClient(uri)`` alone takes its registry from the process-global registry URI,
    which may still point at another store.
    """
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def client(cfg: UnisemConfig):
    """An MlflowClient on the configured store (checked to answer, HTTP timeouts applied first)."""
    return store_client(configure(cfg))


def ensure_experiment(cfg: UnisemConfig) -> str:
    """The id of cfg.registry.experiment, created on first use with its artifacts beside a local database."""
    store = client(cfg)
    exp = store.get_experiment_by_name(cfg.registry.experiment)
    if exp is not None:
        return exp.experiment_id
    root = local_artifact_root(tracking_uri(cfg))
    location = (root / cfg.registry.experiment).as_uri() if root is not None else None
    return store.create_experiment(cfg.registry.experiment, artifact_location=location)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys; leaves are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def config_params(cfg: UnisemConfig) -> dict[str, str]:
    """The full config as MLflow params: dotted keys, lists as JSON, so every setting of a run is searchable."""
    return {k: json.dumps(v) if isinstance(v, (list, tuple)) else str(v) for k, v in flatten(to_dict(cfg)).items()}


def metric_key(name: str) -> str:
    """An MLflow-legal metric or tag key: ``full/NDCG@10`` becomes ``full/NDCG_at_10`` (MLflow rejects '@')."""
    return re.sub(r"[^/\w.\- :]", "_", name.replace("@", "_at_"))


def numeric_leaves(tree: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, float]:
    """Every finite number in a nested mapping, keyed by its path joined with ``sep`` (booleans excluded)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(numeric_leaves(value, name, sep))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of an evaluation report (``EvaluationReport.to_dict()``): ``<split>/full/NDCG_at_10``
    for the headline table and ``<split>/slice/<slice>/<protocol>/<metric>`` for the slices."""
    split = str(evaluation.get("split", "test"))
    flat = evaluation.get("metrics")
    out: dict[str, float] = {}
    if isinstance(flat, Mapping):
        out.update(numeric_leaves(flat, split))
        slices = evaluation.get("slices")
        if isinstance(slices, Mapping):
            out.update(numeric_leaves(slices, f"{split}/slice"))
    else:
        out.update(numeric_leaves(evaluation, split))
    return {metric_key(k): v for k, v in out.items()}


def read_gate(verdict_file: Path | None) -> tuple[str | None, list[Path]]:
    """The quality gate's verdict in ``verdict_file`` and the report files beside it to attach (none when
    the file is not given or absent)."""
    if verdict_file is None or not Path(verdict_file).exists():
        return None, []
    verdict_file = Path(verdict_file)
    try:
        verdict = str(json.loads(verdict_file.read_text()).get("verdict"))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{verdict_file}: not a JSON object with a 'verdict' field: {exc}") from exc
    from unisem.quality.gate import REPORT_FILE

    return verdict, [p for p in (verdict_file, verdict_file.parent / REPORT_FILE) if p.exists()]


def log_history(history: Iterable[Mapping[str, Any]]) -> int:
    """Per-epoch metrics with step = epoch (the entry's ``epoch``, else its position); returns epochs logged."""
    import mlflow

    n = 0
    for position, entry in enumerate(history):
        step = int(entry.get("epoch", position))
        values = {metric_key(k): v for k, v in numeric_leaves(entry).items() if k != "epoch"}
        if values:
            mlflow.log_metrics(values, step=step)
        n += 1
    return n


def log_training_run(
    cfg: UnisemConfig,
    history: Iterable[Mapping[str, Any]] = (),
    evaluation: Mapping[str, Any] | None = None,
    data_paths: Sequence[str | Path] = (),
    plots_dir: Path | None = None,
    verdict_file: Path | None = None,
    params: bool = True,
) -> dict[str, str]:
    """Log one training run into the active MLflow run and return the tags that describe its data.

    Logged: the full config as params, per-epoch metrics, the ``evaluation`` report (``metrics.json``) as
    metrics and as an artifact, every PNG plot under ``plots_dir``, the gate verdict and report of
    ``verdict_file``, and the data version of ``data_paths``.
    """
    import mlflow

    if params:  # a run started by start_training_run has them already
        mlflow.log_params(config_params(cfg))
    log_history(history)
    if evaluation is not None:
        mlflow.log_metrics(evaluation_metrics(evaluation))
        mlflow.log_dict(dict(evaluation), "evaluation/metrics.json")
    if plots_dir is not None and Path(plots_dir).exists():
        for plot in sorted(Path(plots_dir).rglob("*.png")):
            mlflow.log_artifact(str(plot), "plots")
    verdict, quality_files = read_gate(verdict_file)
    for f in quality_files:
        mlflow.log_artifact(str(f), "quality")
    tags = {
        "data_version": data_version(data_paths),
        "gate_verdict": verdict or "unknown",
        "code_version": code_version(),
    }
    mlflow.set_tags(tags)
    return tags


# ---------------------------------------------------------------------------------------------- training run
# MLflow's UI files an experiment without this tag under "GenAI apps"; ours trains models.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow stores a dataset digest in 36 characters; the full sha256 is the run's data_version tag.
DATASET_DIGEST_CHARS = 36


def ensure_training_experiment(cfg: UnisemConfig) -> str:
    """``ensure_experiment``, tagged as a model-training experiment (so the UI opens it on its runs)."""
    experiment_id = ensure_experiment(cfg)
    store = client(cfg)
    exp = store.get_experiment(experiment_id)
    if (exp.tags or {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        store.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment_id


def start_training_run(cfg: UnisemConfig, run_name: str, tags: Mapping[str, str] | None = None) -> str:
    """Create the MLflow run of one training, before it starts, with the config as params; its id.

    The run stays RUNNING while the workers log epochs into it (``EpochMetrics``) and is finished by the
    registration that logs the model into it, so its duration in MLflow is the training's.
    """
    from mlflow.entities import Param

    experiment_id = ensure_training_experiment(cfg)
    store = client(cfg)
    run = store.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
    params = [Param(k, v[:6000]) for k, v in config_params(cfg).items()]
    for start in range(0, len(params), 100):  # MLflow's batch limit is 100 params
        store.log_batch(run.info.run_id, params=params[start:start + 100])
    return run.info.run_id


def finish_run(cfg: UnisemConfig, run_id: str, status: str = "FINISHED") -> None:
    """End a run started by ``start_training_run`` (``FAILED`` when its training failed)."""
    client(cfg).set_terminated(run_id, status)


class EpochMetrics:
    """Logs each epoch's record into an MLflow run as it happens (step = epoch); picklable, so Ray ships
    it to the rank-0 worker. A tracking server that fails mid-training costs the live curve, not the
    training: the error is warned about once and the history is logged again at registration."""

    def __init__(self, uri: str, run_id: str) -> None:
        self.uri, self.run_id = uri, run_id
        self.failed = False

    def __call__(self, record: Mapping[str, Any]) -> None:
        if self.failed:
            return
        import time
        import warnings

        from mlflow.entities import Metric

        step = int(record.get("epoch", 0))
        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(k), v, now, step) for k, v in numeric_leaves(record).items() if k != "epoch"]
        try:
            store_client(self.uri).log_batch(self.run_id, metrics=metrics)
        except Exception as exc:  # noqa: BLE001 - any tracking failure; training goes on
            self.failed = True
            warnings.warn(f"MLflow at {self.uri}: cannot log epoch {step} of run {self.run_id} live: {exc}")


def dataset_input(path: Path, name: str, digest: str, context: str):
    """A ``DatasetInput`` for ``log_inputs``: a local folder or file with our content digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    dataset = MetaDataset(resolve_dataset_source(str(Path(path).resolve())), name=name,
                          digest=digest[:DATASET_DIGEST_CHARS])
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def log_run_inputs(cfg: UnisemConfig, run_id: str, features_dir: Path, verdict_file: Path | None) -> dict[str, str]:
    """Log the features (context ``training``) and the quality verdict (context ``quality``) as the run's
    inputs, each with a content digest, and tag the run with the full ``data_version``; the tags."""
    features_dir = Path(features_dir)
    version = data_version([features_dir])
    inputs = [dataset_input(features_dir, "features", version, "training")]
    tags = {"data_version": version}
    if verdict_file is not None and Path(verdict_file).exists():
        digest = file_sha256(Path(verdict_file))
        inputs.append(dataset_input(Path(verdict_file), "quality_verdict", digest, "quality"))
        try:
            tags["gate_verdict"] = str(json.loads(Path(verdict_file).read_text()).get("verdict"))
        except (json.JSONDecodeError, AttributeError):
            pass
    store = client(cfg)
    store.log_inputs(run_id, datasets=inputs)
    for key, value in tags.items():
        store.set_tag(run_id, key, value)
    return tags


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI when the tracking store is an HTTP server; None for a local store."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(uri: str, name: str, version: str) -> str | None:
    """The model version's page in the MLflow UI for an HTTP tracking server; None for a local store."""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/models/{name}/versions/{version}"


def log_report_pages(cfg: UnisemConfig, run_id: str, files: Iterable[Path]) -> None:
    """Attach the run's report pages to its MLflow run (artifact folder ``report``)."""
    store = client(cfg)
    for f in files:
        if Path(f).exists():
            store.log_artifact(run_id, str(f), "report")


def attach_report_pages(cfg: UnisemConfig, registered: Mapping[str, Any], files: Iterable[Path]) -> None:
    """The pipeline report's pages go to the registered model's MLflow run too (``registered``: the register
    stage's outputs, empty when nothing was registered); a store that is down costs only that copy."""
    import logging

    run_id = registered.get("mlflow_run_id")
    if not run_id:
        return
    try:
        log_report_pages(cfg, str(run_id), files)
    except Exception as exc:  # noqa: BLE001 - the report must be written whatever the tracking store does
        logging.getLogger(__name__).warning("report pages not logged to MLflow run %s: %s", run_id, exc)


@contextmanager
def live_training_run(cfg: UnisemConfig, pipeline_run_id: str, features_dir: Path,
                      verdict_file: Path | None) -> Iterator[tuple[str | None, EpochMetrics | None]]:
    """``(run id, on_epoch)`` of an MLflow run started for one training, its inputs logged, tagged with the
    pipeline run id; the run is marked FAILED if the training raises. A store that cannot be reached costs
    the live curve, not the training: ``(None, None)``, and registration logs the history instead."""
    from unisem.progress import say

    try:
        run_id: str | None = start_training_run(cfg, pipeline_run_id, {RUN_ID_TAG: pipeline_run_id})
        log_run_inputs(cfg, run_id, features_dir, verdict_file if verdict_file and Path(verdict_file).exists() else None)
    except Exception as exc:  # noqa: BLE001 - MLflow down: train anyway; register makes the run (or says why)
        say("unisem.pipeline.stages", f"train: no live MLflow run at {tracking_uri(cfg)} ({type(exc).__name__}: "
                                      f"{exc}); the history is logged at registration")
        run_id = None
    try:
        yield run_id, EpochMetrics(tracking_uri(cfg), run_id) if run_id else None
    except BaseException:
        if run_id:
            finish_run(cfg, run_id, "FAILED")
        raise
