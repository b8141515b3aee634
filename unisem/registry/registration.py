"""Log a trained model to MLflow and register it as the newest version of the model, alias ``challenger``.

Registration never decides what serves: it only adds a version and points ``challenger`` at it. Moving
``champion`` is the promotion rule's job (``unisem.registry.promotion``), on fresh numbers.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from unisem.atomic import write_text_atomic
from unisem.config.schema import UnisemConfig
from unisem.registry.tracking import (
    RUN_ID_TAG,
    TrackingUnavailable,
    configure,
    ensure_experiment,
    evaluation_metrics,
    finish_run,
    log_training_run,
    metric_key,
    model_version_url,
    numeric_leaves,
    read_gate,
    run_url,
    store_client,
    tracking_uri,
)

CHALLENGER, CHAMPION = "challenger", "champion"
REGISTRATION_FILE = "registration.json"
# The model-version tag holding the digest of the staged model folder (what makes two versions the same model).
MODEL_SHA_TAG = "model_sha256"


class RegistrationResult(NamedTuple):
    run_id: str
    model_uri: str  # models:/<name>/<version>
    version: str
    name: str
    tags: dict[str, str]
    reused: bool = False  # the version registered earlier for this pipeline run id, same model bytes
    replaced: tuple[str, ...] = ()  # this pipeline run id's earlier versions, deleted for this one


class RegistrationError(ValueError):
    """The run's data or model cannot be registered (failed gate, missing model folder)."""


def _model_digest(manifest: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(manifest), sort_keys=True).encode()).hexdigest()


def find_registered(cfg: UnisemConfig, pipeline_run_id: str) -> list[dict[str, Any]]:
    """The model versions registered for this pipeline run id (tag ``pipeline_run_id``), oldest first.

    A tracking server that cannot be reached raises (``TrackingUnavailable``): an outage is never read as
    "not registered", which would register a duplicate once the server is back.
    """
    uri = configure(cfg)  # checks that an HTTP tracking server answers, with the configured timeouts
    name = cfg.registry.model_name
    try:
        versions = store_client(uri).search_model_versions(f"name='{name}'")
    except Exception as exc:  # noqa: BLE001 - MlflowException and requests' errors alike mean "no answer"
        raise TrackingUnavailable(f"MLflow at {uri}: cannot list the versions of {name!r} "
                                  f"to check for run {pipeline_run_id}: {exc}") from exc
    found = [mv for mv in versions if (mv.tags or {}).get(RUN_ID_TAG) == pipeline_run_id]
    return [{"model_name": mv.name, "version": str(mv.version), "model_uri": f"models:/{mv.name}/{mv.version}",
             "mlflow_run_id": mv.run_id, "tracking_uri": uri, "model_sha256": (mv.tags or {}).get(MODEL_SHA_TAG),
             "tags": dict(mv.tags or {})}
            for mv in sorted(found, key=lambda mv: int(mv.version))]


def _reusable(existing: Sequence[Mapping[str, Any]], digest: str) -> RegistrationResult | None:
    """The rerun rule: the version already registered for this pipeline run id with these model bytes.

    One rule, asked of the registry itself: the ``pipeline_run_id`` and ``model_sha256`` tags of the
    model versions. A local ``registration.json`` beside the run could say the same, but only on the
    machine that wrote it and only while it agrees with the store (a reset store, a run folder on another
    worker, a version deleted by hand would each make it lie); the registry is what serving reads, so it
    is what decides. ``registration.json`` stays a record of what happened, never read to decide.
    """
    for e in existing:
        if e.get("model_sha256") == digest:
            return RegistrationResult(str(e["mlflow_run_id"]), str(e["model_uri"]), str(e["version"]),
                                      str(e["model_name"]), dict(e.get("tags") or {}), reused=True)
    return None


def log_and_register(
    cfg: UnisemConfig,
    train_result,
    pipeline_run_id: str,
    record_dir: Path | None = None,
    features_dir: Path | None = None,
    embeddings_dir: Path | None = None,
    metrics_path: Path | None = None,
    plots_dir: Path | None = None,
    verdict_path: Path | None = None,
    run_id: str | None = None,
) -> RegistrationResult:
    """One MLflow run for this training (params, curves, evaluation, plots, quality report, data version),
    the model logged as a pyfunc, registered as a new version of cfg.registry.model_name with alias
    ``challenger`` and tags (pipeline run id, data version, code version, gate verdict, metrics).

    ``train_result`` is ``unisem.train.TrainResult`` (model_dir, best_epoch, best_metrics, history).
    Every input is an explicit path: ``features_dir`` and ``embeddings_dir`` the model was trained on
    (item texts and encoder go into the served model), ``metrics_path`` the evaluation report
    (``metrics.json``), ``plots_dir`` the folder of its plots, ``verdict_path`` the gate's verdict.json
    (a ``fail`` is refused); ``record_dir`` receives ``registration.json``.
    ``run_id``: the run the training was logged into live (``tracking.start_training_run``); the model and
    the evaluation go into it and it is finished here, else a new run is made for them.

    One version per ``pipeline_run_id``, and it is the model this run's metrics describe: a rerun whose
    model has the same bytes as the version registered for the run id reuses it (``_reusable``); one whose
    model differs registers it and deletes the run id's earlier versions (aliases on them go with them, so
    promotion decides afresh). The tracking server is asked first, so an outage fails with nothing written.
    """
    import mlflow

    from unisem.registry.pyfunc_model import build_manifest, log_pyfunc, stage_model_folder

    model_dir = Path(train_result.model_dir)
    if not model_dir.is_dir():
        raise RegistrationError(f"{model_dir}: the trained model folder does not exist")
    evaluation = json.loads(Path(metrics_path).read_text()) if metrics_path is not None else None

    verdict, _ = read_gate(verdict_path)
    if verdict == "fail":
        raise RegistrationError(f"{verdict_path}: the quality gate failed for this run's data; not registering")
    name = cfg.registry.model_name
    existing = find_registered(cfg, pipeline_run_id)  # configures the store and checks that it answers
    uri = tracking_uri(cfg)
    experiment_id = ensure_experiment(cfg)
    client = store_client(uri)
    features_dir = Path(features_dir) if features_dir is not None and Path(features_dir).exists() else None

    with tempfile.TemporaryDirectory(prefix="unisem-model-") as tmp:
        item_texts, features = None, None
        if features_dir is not None:
            from unisem.data.dataset import load_features

            features = load_features(features_dir)
            item_texts = list(features.item_texts)
        encoder_meta = None
        if embeddings_dir is not None and (Path(embeddings_dir) / "meta.json").exists():
            meta = json.loads((Path(embeddings_dir) / "meta.json").read_text())
            # identity only: cache statistics and paths differ between reruns and would change the digest
            encoder_meta = {k: meta[k] for k in ("model", "dim", "texts_sha256") if k in meta}
        staged = stage_model_folder(model_dir, Path(tmp) / "model", item_texts, encoder_meta, features,
                                    features_dir.name if features_dir is not None else "features",
                                    cfg.registry.index_min_items, cfg.registry.index_target_recall)
        digest = _model_digest(build_manifest(staged))
        previous = _reusable(existing, digest)
        if previous is not None:
            if run_id is not None and run_id != previous.run_id:
                finish_run(cfg, run_id, "KILLED")  # a retrained rerun whose identical model is already registered
            _write_record(record_dir, previous, uri, digest)
            return previous

        history = train_result.history
        if run_id is not None and "loss" in client.get_run(run_id).data.metrics:
            history = ()  # logged live, epoch by epoch
        start = {"run_id": run_id} if run_id is not None else {"experiment_id": experiment_id,
                                                               "run_name": pipeline_run_id}
        with mlflow.start_run(**start) as run:
            paths = [features_dir] if features_dir is not None else []
            tags = log_training_run(cfg, history, evaluation, paths, plots_dir=plots_dir, verdict_file=verdict_path,
                                    params=run_id is None)
            mlflow.log_metric("best_epoch", float(train_result.best_epoch))
            best = {metric_key("best/valid/" + k): v for k, v in numeric_leaves(train_result.best_metrics).items()}
            if best:
                mlflow.log_metrics(best)
            info = log_pyfunc(staged)
            run_id = run.info.run_id

    version = str(mlflow.register_model(info.model_uri, name).version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    version_tags = {
        **tags,
        RUN_ID_TAG: pipeline_run_id,
        "run_id": run_id,
        MODEL_SHA_TAG: digest,
        "best_epoch": str(train_result.best_epoch),
    }
    if record_dir is not None:
        version_tags["run_folder"] = str(Path(record_dir).resolve().parent)
    if evaluation is not None:  # the headline only: every metric is on the run, one click away
        headline = {metric_key(f"test/{p}/{m}") for p in ("full", "sampled-99") for m in ("NDCG@10", "HR@10")}
        version_tags.update(
            {f"metric.{k}": f"{v:.6g}" for k, v in evaluation_metrics(evaluation).items() if k in headline}
        )
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    replaced = tuple(e["version"] for e in existing if e["version"] != version)
    for old in replaced:
        client.delete_model_version(name, old)
    result = RegistrationResult(run_id, f"models:/{name}/{version}", version, name, version_tags, replaced=replaced)
    _write_record(record_dir, result, uri, digest)
    return result


def _write_record(record_dir: Path | None, result: RegistrationResult, uri: str, digest: str) -> None:
    """``registration.json``: what this registration did (a record for people and the report, not a rule)."""
    if record_dir is None:
        return
    record = {**result._asdict(), "tracking_uri": uri, "model_sha256": digest, "alias": CHALLENGER}
    write_text_atomic(Path(record_dir) / REGISTRATION_FILE, json.dumps(record, indent=2, sort_keys=True))


def registration_outputs(cfg: UnisemConfig, result: RegistrationResult) -> dict[str, Any]:
    """The registration as the pipeline reports it: version, run and their MLflow UI pages (HTTP store)."""
    uri = tracking_uri(cfg)
    experiment_id = store_client(uri).get_run(result.run_id).info.experiment_id
    return {"model_name": result.name, "version": result.version, "model_uri": result.model_uri,
            "mlflow_run_id": result.run_id, "tracking_uri": uri, "reused": result.reused,
            "replaced": list(result.replaced), "run_url": run_url(uri, experiment_id, result.run_id),
            "version_url": model_version_url(uri, result.name, result.version)}
