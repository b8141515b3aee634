"""Log a trained model to MLflow and register it as the newest version of the model, alias ``challenger``.

Registration never decides what serves: it only adds a version and points ``challenger`` at it. Moving
``champion`` is the promotion rule's job (``unisem.registry.promotion``), on fresh numbers.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from unisem.atomic import write_text_atomic
from unisem.config.schema import UnisemConfig
from unisem.home import RunLayout
from unisem.registry.tracking import (
    configure,
    ensure_experiment,
    evaluation_metrics,
    log_training_run,
    metric_key,
    numeric_leaves,
    read_gate,
    tracking_uri,
)

CHALLENGER, CHAMPION = "challenger", "champion"
REGISTRATION_FILE = "registration.json"


class RegistrationResult(NamedTuple):
    run_id: str
    model_uri: str  # models:/<name>/<version>
    version: str
    name: str
    tags: dict[str, str]


class RegistrationError(ValueError):
    """The run's data or model cannot be registered (failed gate, missing model folder)."""


def _model_digest(manifest: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(manifest), sort_keys=True).encode()).hexdigest()


def _previous(layout: RunLayout, uri: str, name: str, digest: str) -> RegistrationResult | None:
    """This run's earlier registration of the same model bytes in the same store, if it still exists."""
    import mlflow

    path = layout.registry / REGISTRATION_FILE
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if rec.get("tracking_uri") != uri or rec.get("name") != name or rec.get("model_sha256") != digest:
        return None
    try:
        mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(name, str(rec["version"]))
    except mlflow.exceptions.MlflowException:
        return None
    return RegistrationResult(rec["run_id"], rec["model_uri"], str(rec["version"]), name, dict(rec.get("tags", {})))


def log_and_register(
    cfg: UnisemConfig,
    layout: RunLayout,
    train_result,
    evaluation: Mapping[str, Any] | None = None,
    features_dir: Path | None = None,
    embeddings_dir: Path | None = None,
    data_paths: Iterable[str | Path] | None = None,
    run_id: str | None = None,
) -> RegistrationResult:
    """One MLflow run for this training (params, curves, evaluation, plots, quality report, data version),
    the model logged as a pyfunc, registered as a new version of cfg.registry.model_name with alias
    ``challenger`` and tags (data version, code version, gate verdict, metrics).

    ``train_result`` is ``unisem.train.TrainResult`` (model_dir, best_epoch, best_metrics, history).
    ``run_id``: the run the training was logged into live (``tracking.start_training_run``); the model and
    the evaluation go into it and it is finished here, else a new run is made for them.
    Rerunning for the same run folder and the same model bytes returns the existing version (idempotent).
    A run whose data failed the quality gate is refused.
    """
    import mlflow

    from unisem.registry.pyfunc_model import build_manifest, log_pyfunc, stage_model_folder

    model_dir = Path(train_result.model_dir)
    if not model_dir.is_dir():
        raise RegistrationError(f"{model_dir}: the trained model folder does not exist")
    features_dir = Path(features_dir) if features_dir is not None else layout.features
    embeddings_dir = Path(embeddings_dir) if embeddings_dir is not None else layout.embeddings
    if evaluation is None and (layout.evaluation / "metrics.json").exists():
        evaluation = json.loads((layout.evaluation / "metrics.json").read_text())

    verdict, _ = read_gate(layout)
    if verdict == "fail":
        raise RegistrationError(
            f"{layout.quality / 'verdict.json'}: the quality gate failed for this run's data; not registering"
        )
    name = cfg.registry.model_name
    uri = configure(cfg)
    experiment_id = ensure_experiment(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

    with tempfile.TemporaryDirectory(prefix="unisem-model-") as tmp:
        item_texts, features = None, None
        if features_dir.exists():
            from unisem.data.dataset import load_features

            features = load_features(features_dir)
            item_texts = list(features.item_texts)
        encoder_meta = None
        if (embeddings_dir / "meta.json").exists():
            meta = json.loads((embeddings_dir / "meta.json").read_text())
            # identity only: cache statistics and paths differ between reruns and would change the digest
            encoder_meta = {k: meta[k] for k in ("model", "dim", "texts_sha256") if k in meta}
        staged = stage_model_folder(model_dir, Path(tmp) / "model", item_texts, encoder_meta, features,
                                    features_dir.name)
        digest = _model_digest(build_manifest(staged))
        previous = _previous(layout, uri, name, digest)
        if previous is not None:
            return previous

        history = train_result.history
        if run_id is not None and "loss" in client.get_run(run_id).data.metrics:
            history = ()  # logged live, epoch by epoch
        start = {"run_id": run_id} if run_id is not None else {"experiment_id": experiment_id,
                                                               "run_name": layout.root.name}
        with mlflow.start_run(**start) as run:
            paths = data_paths if data_paths is not None else [p for p in (features_dir,) if p.exists()]
            tags = log_training_run(cfg, layout, history, evaluation, paths, params=run_id is None)
            mlflow.log_metric("best_epoch", float(train_result.best_epoch))
            best = {metric_key("best/valid/" + k): v for k, v in numeric_leaves(train_result.best_metrics).items()}
            if best:
                mlflow.log_metrics(best)
            info = log_pyfunc(staged)
            run_id = run.info.run_id

    version = mlflow.register_model(info.model_uri, name).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    version_tags = {
        **tags,
        "run_id": run_id,
        "model_sha256": digest,
        "best_epoch": str(train_result.best_epoch),
        "run_folder": str(layout.root),
    }
    if evaluation is not None:  # the headline only: every metric is on the run, one click away
        headline = {metric_key(f"test/{p}/{m}") for p in ("full", "sampled-99") for m in ("NDCG@10", "HR@10")}
        version_tags.update(
            {f"metric.{k}": f"{v:.6g}" for k, v in evaluation_metrics(evaluation).items() if k in headline}
        )
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    result = RegistrationResult(run_id, f"models:/{name}/{version}", str(version), name, version_tags)
    record = {**result._asdict(), "tracking_uri": tracking_uri(cfg), "model_sha256": digest, "alias": CHALLENGER}
    write_text_atomic(layout.registry / REGISTRATION_FILE, json.dumps(record, indent=2, sort_keys=True))
    return result
