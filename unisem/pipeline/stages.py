"""The nightly pipeline, one function per Airflow task.

Each stage takes a ``RunSpec`` (run id, config file, overrides, home) and the small dicts its upstream stages
returned, calls the stage library (or submits a cluster job when the config names a cluster), writes its
outputs under ``RunLayout.for_run(run_id)`` and returns a small JSON-able dict of paths and URIs: tasks pass
paths, never data. Every stage records its result (or its error) in ``layout.pipeline`` so the report can
explain the run whatever happened to it.

Reruns: the run id comes from the logical date, so running a date again overwrites that date's folders
(every library stage writes atomically), and ``register`` keeps exactly one model version per run id: the
rerun's own model (the earlier version is reused when the bytes match, else replaced).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from unisem.atomic import atomic_dir, write_text_atomic
from unisem.config import UnisemConfig, to_dict
from unisem.home import RunLayout, demo_data_dir, embedding_cache_dir
from unisem.pipeline import cluster
from unisem.pipeline.records import STAGES, clear_records, read_records, recorded
from unisem.pipeline.spec import RunSpec
from unisem.progress import say
from unisem.pipeline.summary import COMPARE_PAGE, build_summary, render_html, render_markdown

# The MLflow model-version tag that ties a registered version to the pipeline run that produced it.
RUN_ID_TAG = "pipeline_run_id"
PROCEED_VERDICTS = ("pass", "warn")


class StageError(RuntimeError):
    """A stage cannot run: a missing upstream output or an inconsistent state; the message says which."""


def _spec(spec: RunSpec | Mapping[str, Any]) -> RunSpec:
    return spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)


def _need(upstream: Mapping[str, Any], key: str, stage: str) -> Any:
    if key not in upstream or upstream[key] in (None, ""):
        raise StageError(f"{stage}: the upstream output {key!r} is missing (got keys: {', '.join(upstream) or 'none'})")
    return upstream[key]


# ---------------------------------------------------------------------------------------------- inputs
def resolve_inputs(cfg: UnisemConfig, home: Path) -> tuple[Path, Path]:
    """The catalog and interactions of this run: the configured paths, or the demo data (made on first use)."""
    catalog, interactions = cfg.data.catalog.strip(), cfg.data.interactions.strip()
    if bool(catalog) != bool(interactions):
        raise StageError(
            "data.catalog and data.interactions must be given together (both empty = the demo data); "
            f"got catalog={catalog!r} interactions={interactions!r}"
        )
    if not catalog:
        from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE
        from unisem.data.demo import ensure_demo_data

        folder = Path(ensure_demo_data(cfg.data.demo, home))
        return folder / CATALOG_FILE, folder / INTERACTIONS_FILE
    paths = (Path(catalog).expanduser().resolve(), Path(interactions).expanduser().resolve())
    for key, path in zip(("data.catalog", "data.interactions"), paths):
        if not path.exists():
            raise FileNotFoundError(f"{key}: {path} does not exist")
    return paths


def gate_reasons(verdict: Mapping[str, Any]) -> list[str]:
    """Why the gate decided what it did: each check that tripped (its worst level only), failures first.

    Reads the ``checks`` of unisem.quality's verdict.json: ``{check, measure, severity, threshold, observed,
    passed}`` per threshold level, ``max_*`` checks tripping above the threshold and ``min_*`` below it.
    """
    worst: dict[str, Mapping[str, Any]] = {}
    for check in verdict.get("checks") or ():
        if not isinstance(check, Mapping) or check.get("passed", True):
            continue
        name = str(check.get("check"))
        if name not in worst or (check.get("severity") == "fail" and worst[name].get("severity") != "fail"):
            worst[name] = check
    out: list[tuple[int, str]] = []
    for name, check in worst.items():
        severity = str(check.get("severity"))
        observed, threshold = check.get("observed"), check.get("threshold")
        side = "below the minimum" if name.startswith("min_") else "above the maximum"
        shown = f"{observed:.4g}" if isinstance(observed, (int, float)) else str(observed)
        out.append((0 if severity == "fail" else 1,
                    f"{severity}: {check.get('measure', name)} = {shown}, {side} {threshold} ({name})"))
    for failure in verdict.get("expectations_failed") or ():  # failed Great Expectations count by severity
        if isinstance(failure, Mapping):
            severity = "fail" if failure.get("severity") == "critical" else "warn"
            out.append((0 if severity == "fail" else 1, f"{severity}: expectation {failure.get('suite')}/"
                        f"{failure.get('expectation')} failed on {failure.get('unexpected_count')} rows"))
    return [text for _, text in sorted(out, key=lambda x: x[0])]


def _read_verdict(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StageError(f"{path}: cannot read the quality gate verdict: {exc}") from exc
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "warn", "fail"):
        raise StageError(f"{path}: expected a JSON object whose 'verdict' is pass, warn or fail")
    return data


# ---------------------------------------------------------------------------------------------- stages
def _spark_timeouts(cfg: UnisemConfig) -> dict[str, float]:
    t = cfg.orchestration.timeouts
    return {"timeout_s": t.spark_submit_s, "connect_timeout_s": t.service_connect_s}


def validate(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Resolve the input data and run the quality gate (Great Expectations on Spark) over it.

    As the first stage of a run it clears the run's stage records, so a rerun reports only itself.
    """
    spec = _spec(spec)
    layout = spec.layout()
    clear_records(layout)

    def body() -> dict[str, Any]:
        cfg = spec.config()
        home = Path(spec.home)
        write_effective_config(spec)
        catalog, interactions = resolve_inputs(cfg, home)
        if cluster.spark_mode(cfg.orchestration.spark_master) == "library":
            from unisem.quality.gate import run_gate

            result = run_gate(cfg, catalog, interactions, layout.quality, home=home)
            verdict_path, report_path = Path(result.verdict_path), Path(result.report_path)
        else:
            # jobs/validate.py = `unisem validate`: exit 3 is a failed verdict, which the gate stage handles.
            cluster.spark_submit(
                cfg.orchestration.spark_master,
                "validate.py",
                ["--catalog", str(catalog), "--interactions", str(interactions), "--out", str(layout.quality),
                 "--home", spec.home, *spec.config_args()],
                layout.pipeline / "logs" / "validate.log",
                ok_codes=(0, 3),
                **_spark_timeouts(cfg),
            )
            verdict_path, report_path = layout.quality / "verdict.json", layout.quality / "report.html"
        verdict = _read_verdict(verdict_path)
        reasons = gate_reasons(verdict)
        say(__name__, f"quality gate: {verdict['verdict']}" + (f" ({len(reasons)} checks tripped)" if reasons else ""))
        for reason in reasons:
            say(__name__, f"quality gate: {reason}")
        return {
            "run_id": spec.run_id,
            "catalog": str(catalog),
            "interactions": str(interactions),
            "verdict": verdict["verdict"],
            "reasons": reasons,
            "verdict_path": str(verdict_path),
            "report_path": str(report_path),
        }

    return recorded(layout, "validate", body)


def gate(spec: RunSpec | Mapping[str, Any], validated: Mapping[str, Any]) -> dict[str, Any]:
    """Decide whether the run goes on: a ``fail`` verdict stops it before any training."""
    spec = _spec(spec)

    def body() -> dict[str, Any]:
        verdict = _need(validated, "verdict", "gate")
        proceed = verdict in PROCEED_VERDICTS
        return {"proceed": proceed, "verdict": verdict, "reasons": list(validated.get("reasons") or ())}

    return recorded(spec.layout(), "gate", body)


def previous_features(home: Path, run_id: str) -> Path | None:
    """The features folder of the latest earlier run, whose id vocabularies the new run keeps stable."""
    runs = home / "runs"
    if not runs.is_dir():
        return None
    earlier = sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name < run_id
                     and (RunLayout(p).features / "manifest.json").exists())
    return RunLayout(runs / earlier[-1]).features if earlier else None


def features(spec: RunSpec | Mapping[str, Any], validated: Mapping[str, Any]) -> dict[str, Any]:
    """Id vocabularies, per-user sequences and splits, item texts (Spark) -> ``layout.features``."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        cfg = spec.config()
        catalog = Path(_need(validated, "catalog", "features"))
        interactions = Path(_need(validated, "interactions", "features"))
        previous = previous_features(Path(spec.home), spec.run_id)
        if cluster.spark_mode(cfg.orchestration.spark_master) == "library":
            from unisem.data.features import build_features

            out = Path(build_features(cfg, catalog, interactions, layout.features, previous=previous))
        else:
            args = ["--catalog", str(catalog), "--interactions", str(interactions), "--out", str(layout.features)]
            if previous is not None:
                args += ["--previous", str(previous)]
            cluster.spark_submit(cfg.orchestration.spark_master, "build_features.py", [*args, *spec.config_args()],
                                 layout.pipeline / "logs" / "features.log", **_spark_timeouts(cfg))
            out = layout.features
        manifest = out / "manifest.json"
        counts = json.loads(manifest.read_text()) if manifest.exists() else {}
        return {"features_dir": str(out), "previous": str(previous) if previous else None,
                "items": counts.get("items"), "users": counts.get("users")}

    return recorded(layout, "features", body)


def embed(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any]) -> dict[str, Any]:
    """Text embeddings of every item (cached per text and encoder) -> ``layout.embeddings``."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        from unisem.data.dataset import read_item_texts
        from unisem.text.embeddings import embed_item_texts

        cfg = spec.config()
        features_dir = Path(_need(featured, "features_dir", "embed"))
        out = embed_item_texts(read_item_texts(features_dir).texts, layout.embeddings, cfg.text,
                               cache_dir=embedding_cache_dir(Path(spec.home)), features_dir=features_dir)
        return {"embeddings_dir": str(out)}

    return recorded(layout, "embed", body)


HISTORY_FILE = "history.json"


def _train_outputs(result: Any, history_path: Path) -> dict[str, Any]:
    """The per-epoch history goes to a file (it outgrows an XCom); downstream stages get its path."""
    write_text_atomic(history_path, json.dumps([dict(h) for h in result.history], indent=1, default=float))
    return {
        "model_dir": str(result.model_dir),
        "best_epoch": int(result.best_epoch),
        "best_metrics": {k: float(v) for k, v in dict(result.best_metrics).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "history_path": str(history_path),
    }


def read_history(trained: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The training history of a train stage's outputs: inline (older records) or from ``history_path``."""
    if trained.get("history"):
        return [dict(h) for h in trained["history"]]
    path = trained.get("history_path")
    if not path:
        return []
    try:
        return list(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise StageError(f"{path}: cannot read the training history: {exc}") from exc


def _train_library(cfg: UnisemConfig, spec: RunSpec, features_dir: Path, embeddings_dir: Path) -> dict[str, Any]:
    """Train under an MLflow run started now, epochs logged into it live; registration finishes the run."""
    from unisem.registry.tracking import EpochMetrics, finish_run, log_run_inputs, start_training_run, tracking_uri
    from unisem.train.ray_trainer import train_with_ray

    layout = spec.layout()
    try:
        run_id: str | None = start_training_run(cfg, spec.run_id, {RUN_ID_TAG: spec.run_id})
        verdict = layout.quality / "verdict.json"
        log_run_inputs(cfg, run_id, features_dir, verdict if verdict.exists() else None)
    except Exception as exc:  # noqa: BLE001 - MLflow down: train anyway; register makes the run (or says why)
        say(__name__, f"train: no live MLflow run at {tracking_uri(cfg)} ({type(exc).__name__}: {exc}); "
                      "the history is logged at registration")
        run_id = None
    try:
        result = train_with_ray(cfg, features_dir, embeddings_dir, layout.training,
                                on_epoch=EpochMetrics(tracking_uri(cfg), run_id) if run_id else None)
    except BaseException:
        if run_id:
            finish_run(cfg, run_id, "FAILED")
        raise
    return {**_train_outputs(result, layout.training / HISTORY_FILE), "mlflow_run_id": run_id}


def train(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], embedded: Mapping[str, Any]) -> dict[str, Any]:
    """Ray Train (local instance, or a Ray Job on the cluster at orchestration.ray_address) -> the model folder."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        cfg = spec.config()
        features_dir = Path(_need(featured, "features_dir", "train"))
        embeddings_dir = Path(_need(embedded, "embeddings_dir", "train"))
        if cluster.ray_mode(cfg.orchestration.ray_address) == "library":
            return _train_library(cfg, spec, features_dir, embeddings_dir)
        # On the cluster the same stage runs as the Ray Job's entry point; an explicit ray_address (flag, DAG
        # param) is dropped there, so the job's driver joins the cluster it runs in through the RAY_ADDRESS Ray
        # sets for it (host:port, never the dashboard URL). Its record is the result.
        job_spec = spec._replace(overrides=tuple(o for o in spec.overrides
                                                 if not o.strip().startswith("orchestration.ray_address=")))
        entry = ["unisem", "stage", "train", *job_spec.cli_args(),
                 "--upstream", json.dumps({"features_dir": str(features_dir), "embeddings_dir": str(embeddings_dir)})]
        timeouts = cfg.orchestration.timeouts
        job_id = cluster.submit_ray_job(cfg.orchestration.ray_address, entry, name=f"unisem-train-{spec.run_id}",
                                        env={"UNISEM_HOME": spec.home}, log_path=layout.pipeline / "logs" / "train.log",
                                        timeout_s=timeouts.ray_job_s, auth_token=cfg.orchestration.ray_auth_token,
                                        connect_timeout_s=timeouts.service_connect_s)
        record = read_records(layout).get("train") or {}
        if record.get("status") != "ok":
            raise StageError(f"Ray job {job_id} finished but wrote no train result in {layout.pipeline}")
        return {**record["outputs"], "ray_job_id": job_id}

    return recorded(layout, "train", body)


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``{"full/NDCG@10": ..., "sampled-99/HR@10": ...}`` from an evaluation report's protocol tables."""
    protocols = report.get("protocols") if isinstance(report.get("protocols"), Mapping) else report
    out: dict[str, float] = {}
    for protocol, metrics in protocols.items():
        if not isinstance(metrics, Mapping):
            continue
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{protocol}/{name}"] = float(value)
    return out


def evaluate(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], trained: Mapping[str, Any]) -> dict[str, Any]:
    """Full ranking + sampled-99 + slices + diagnostics on the test split -> ``layout.evaluation``."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        from unisem.evaluate.saved_model import evaluate_model_dir

        cfg = spec.config()
        report = evaluate_model_dir(Path(_need(trained, "model_dir", "evaluate")),
                                    Path(_need(featured, "features_dir", "evaluate")), cfg, split="test",
                                    out_dir=layout.evaluation, history=read_history(trained))
        return {"metrics_path": str(layout.evaluation / "metrics.json"), "headline": headline_metrics(report)}

    return recorded(layout, "evaluate", body)


def find_registered(cfg: UnisemConfig, run_id: str) -> list[dict[str, Any]]:
    """The model versions registered for this pipeline run id (the rerun guard), oldest first.

    A tracking server that cannot be reached raises (``TrackingUnavailable``): an outage is never read as
    "not registered", which would register a duplicate once the server is back.
    """
    from unisem.registry.tracking import TrackingUnavailable, client, tracking_uri

    uri = tracking_uri(cfg)
    store = client(cfg)  # checks that an HTTP tracking server answers, with the configured timeouts
    try:
        versions = store.search_model_versions(f"name='{cfg.registry.model_name}'")
    except Exception as exc:  # noqa: BLE001 - MlflowException and requests' errors alike mean "no answer"
        raise TrackingUnavailable(f"MLflow at {uri}: cannot list the versions of {cfg.registry.model_name!r} "
                                  f"to check for run {run_id}: {exc}") from exc
    found = [mv for mv in versions if (mv.tags or {}).get(RUN_ID_TAG) == run_id]
    return [{"model_name": mv.name, "version": str(mv.version), "model_uri": f"models:/{mv.name}/{mv.version}",
             "mlflow_run_id": mv.run_id, "tracking_uri": uri, "model_sha256": (mv.tags or {}).get("model_sha256")}
            for mv in sorted(found, key=lambda mv: int(mv.version))]


def register(spec: RunSpec | Mapping[str, Any], trained: Mapping[str, Any], evaluated: Mapping[str, Any]) -> dict[str, Any]:
    """Log the run to MLflow and register the model as a new version with alias ``challenger``.

    One version per pipeline run id, and it is the model this run's metrics describe: a rerun whose model
    has the same bytes (sha256) as the version registered for the run id reuses it; a rerun whose model
    differs registers it and deletes the run id's earlier version (aliases on it go with it, so ``promote``
    decides afresh). The tracking server is checked first, so an outage fails here with nothing written.
    """
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        import mlflow

        from unisem.registry.registration import log_and_register
        from unisem.registry.tracking import client
        from unisem.train import TrainResult

        cfg = spec.config()
        _need(evaluated, "metrics_path", "register")
        existing = find_registered(cfg, spec.run_id)
        train_out = dict(trained)
        if "history" not in train_out and "history_path" not in train_out:  # an older DAG's stripped XCom
            recorded_train = read_records(layout).get("train") or {}
            train_out = {**(recorded_train.get("outputs") or {}), **train_out}
        result = TrainResult(model_dir=Path(_need(train_out, "model_dir", "register")),
                             best_epoch=int(train_out.get("best_epoch", 0)),
                             best_metrics=dict(train_out.get("best_metrics") or {}),
                             history=read_history(train_out))
        started = train_out.get("mlflow_run_id")
        reg = log_and_register(cfg, layout, result, run_id=started)
        store = client(cfg)
        uri = mlflow.get_tracking_uri()
        name = cfg.registry.model_name
        store.set_model_version_tag(name, str(reg.version), RUN_ID_TAG, spec.run_id)
        reused = any(e["version"] == str(reg.version) for e in existing)
        if started and started != reg.run_id:
            from unisem.registry.tracking import finish_run

            finish_run(cfg, str(started), "KILLED")  # a retrained rerun whose identical model is already registered
        replaced = [e["version"] for e in existing if e["version"] != str(reg.version)]
        for version in replaced:
            store.delete_model_version(name, version)
        from unisem.registry.tracking import model_version_url, run_url

        experiment_id = store.get_run(reg.run_id).info.experiment_id
        return {"model_name": name, "version": str(reg.version), "model_uri": reg.model_uri,
                "mlflow_run_id": reg.run_id, "tracking_uri": uri, "reused": reused, "replaced": replaced,
                "run_url": run_url(uri, experiment_id, reg.run_id),
                "version_url": model_version_url(uri, name, str(reg.version))}

    return recorded(layout, "register", body)


def promote(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], registered: Mapping[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the challenger only if it beats the champion on the promotion metric."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        from unisem.registry.promotion import promote_if_better

        cfg = spec.config()
        version = str(_need(registered, "version", "promote"))
        decision = promote_if_better(cfg, Path(_need(featured, "features_dir", "promote")),
                                     embeddings_dir=layout.embeddings, layout=layout, challenger_version=version)
        return json.loads(json.dumps(decision._asdict(), default=str))

    return recorded(layout, "promote", body)


def recommend(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], promoted: Mapping[str, Any]) -> dict[str, Any]:
    """Top-K for every user of the features with whichever version holds ``champion`` after ``promote``
    (Spark) -> ``layout.recommendations`` and ``<home>/published/recommendations`` (the DAG's Asset)."""
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        from unisem.home import published_recommendations_dir

        cfg = spec.config()  # ``promoted`` only orders the stages: the alias is read from the registry
        features_dir = Path(_need(featured, "features_dir", "recommend"))
        published = published_recommendations_dir(Path(spec.home))
        if cluster.spark_mode(cfg.orchestration.spark_master) == "library":
            from unisem.registry.batch import recommend_all

            return recommend_all(cfg, features_dir, layout.recommendations, spec.run_id, published_dir=published)
        cluster.spark_submit(cfg.orchestration.spark_master, "recommend.py",
                             ["--features", str(features_dir), "--out", str(layout.recommendations),
                              "--run-id", spec.run_id, "--published", str(published), *spec.config_args()],
                             layout.pipeline / "logs" / "recommend.log")
        from unisem.registry.batch import MANIFEST_FILE

        manifest = json.loads((layout.recommendations / MANIFEST_FILE).read_text())
        return {**manifest, "path": str(layout.recommendations), "published": str(published)}

    return recorded(layout, "recommend", body)


def publish_quality_report(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Copy this run's quality report and verdict to ``<home>/published/quality/{<run id>,latest}/``."""
    spec = _spec(spec)
    layout = spec.layout()
    base = Path(spec.home) / "published" / "quality"
    files = [p for p in (layout.quality / "verdict.json", layout.quality / "report.html") if p.exists()]
    if not files:
        return {"published": None}
    for target in (base / spec.run_id, base / "latest"):
        with atomic_dir(target) as tmp:
            for f in files:
                shutil.copy2(f, tmp / f.name)
            docs = layout.quality / "data_docs"
            if docs.is_dir():
                shutil.copytree(docs, tmp / "data_docs")
            (tmp / "run_id.txt").write_text(spec.run_id + "\n")
    return {"published": str(base / spec.run_id), "latest": str(base / "latest")}


def report(spec: RunSpec | Mapping[str, Any], expected: Sequence[str] = STAGES[:-1]) -> dict[str, Any]:
    """Summarise the run from its stage records: ``layout.report/summary.{json,md,html}``; publish the gate report.

    Runs whatever happened upstream (the DAG gives it trigger rule ``all_done``), so a stopped or failed run
    is explained too.
    """
    spec = _spec(spec)
    layout = spec.layout()

    def body() -> dict[str, Any]:
        records = read_records(layout)
        summary = build_summary(spec.run_id, records, expected)
        summary["config"] = {"file": spec.config_path, "overrides": list(spec.overrides)}
        summary["quality_published"] = publish_quality_report(spec).get("published")
        with atomic_dir(layout.report) as tmp:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
            (tmp / "summary.md").write_text(render_markdown(summary))
            if "promote" in expected or "register" in expected:
                (tmp / COMPARE_PAGE).write_text(compare_page(spec, layout))
            (tmp / "summary.html").write_text(render_html(summary, layout.report))
        pages = [layout.report / "summary.html", layout.report / COMPARE_PAGE]
        _log_pages(spec, summary, pages)
        out = {"summary_path": str(layout.report / "summary.json"), "status": summary["status"],
               "markdown_path": str(layout.report / "summary.md"), "html_path": str(pages[0])}
        if pages[1].exists():
            out["compare_path"] = str(pages[1])
        return out

    return recorded(layout, "report", body)


def compare_page(spec: RunSpec, layout: RunLayout) -> str:
    """The champion-vs-challenger page: this night's promotion record and the last nights' history."""
    from unisem.pipeline.history import night_history
    from unisem.pipeline.pages import render_compare_page

    cfg = spec.config()
    promotion_file = layout.registry / "promotion.json"
    promotion = None
    if promotion_file.exists():
        try:
            promotion = json.loads(promotion_file.read_text())
        except json.JSONDecodeError:
            promotion = None
    nights = night_history(Path(spec.home), spec.run_id, cfg.registry.report_nights, cfg.registry.promotion_metric)
    gate_report = "../quality/report.html" if (layout.quality / "report.html").exists() else None
    return render_compare_page(spec.run_id, promotion, nights, cfg.registry.guardrail_slices, gate_report)


def _log_pages(spec: RunSpec, summary: Mapping[str, Any], pages: Sequence[Path]) -> None:
    """The pages go to the run's MLflow run too; a tracking store that is down costs only that copy."""
    import logging

    run_id = (summary.get("model") or {}).get("mlflow_run_id")
    if not run_id:
        return
    try:
        from unisem.registry.tracking import log_report_pages

        log_report_pages(spec.config(), str(run_id), pages)
    except Exception as exc:  # noqa: BLE001 - the report must be written whatever the tracking store does
        logging.getLogger(__name__).warning("report pages not logged to MLflow run %s: %s", run_id, exc)


def write_effective_config(spec: RunSpec | Mapping[str, Any]) -> Path:
    """The resolved config of this run as JSON beside its outputs (what the run actually used)."""
    spec = _spec(spec)
    return write_text_atomic(spec.layout().root / "config.json", json.dumps(to_dict(spec.config()), indent=2))


# Stage name -> function, for ``unisem stage`` (the entry point of Ray Jobs and manual reruns).
STAGE_FUNCTIONS = {
    "validate": validate, "gate": gate, "features": features, "embed": embed, "train": train,
    "evaluate": evaluate, "register": register, "promote": promote, "recommend": recommend,
    "report": report,
}
