"""The nightly pipeline, one function per Airflow task.

Each stage takes a ``RunSpec`` (run id, config file, overrides, home) and the typed outputs its upstream
stages returned (``unisem.pipeline.outputs``), calls the stage library (or submits a cluster job when the
config names a cluster) with explicit paths taken from those outputs, writes its own outputs under
``RunLayout.for_run(run_id)`` and returns its typed record of paths and URIs: tasks pass paths, never data,
and no library re-derives a path from the layout. Every stage records its result (or its error) in
``layout.pipeline`` so the report can explain the run whatever happened to it.

Reruns: the run id comes from the logical date, so running a date again overwrites that date's folders
(every library stage writes atomically), and ``register`` keeps exactly one model version per run id: the
rerun's own model (``unisem.registry.registration`` says how).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from unisem.atomic import atomic_dir, write_text_atomic
from unisem.config import UnisemConfig, to_dict
from unisem.home import RunLayout, embedding_cache_dir
from unisem.pipeline import cluster
from unisem.pipeline.outputs import Embedded, Evaluated, Featured, Proceeding, Registered, Trained, Validated
from unisem.pipeline.records import STAGES, clear_records, read_records, recorded
from unisem.pipeline.spec import RunSpec
from unisem.progress import say
from unisem.pipeline.summary import COMPARE_PAGE, build_summary, render_html, render_markdown

PROCEED_VERDICTS = ("pass", "warn")
T = TypeVar("T", bound=Mapping[str, Any])


class StageError(RuntimeError):
    """A stage cannot run: a missing upstream output or an inconsistent state; the message says which."""


def _spec(spec: RunSpec | Mapping[str, Any]) -> RunSpec:
    return spec if isinstance(spec, RunSpec) else RunSpec.from_dict(spec)


def _need(upstream: Mapping[str, Any], key: str, stage: str) -> Any:
    if key not in upstream or upstream[key] in (None, ""):
        raise StageError(f"{stage}: the upstream output {key!r} is missing (got keys: {', '.join(upstream) or 'none'})")
    return upstream[key]


def _path(upstream: Mapping[str, Any], key: str, stage: str) -> Path:
    return Path(_need(upstream, key, stage))


def _maybe_path(upstream: Mapping[str, Any], key: str) -> Path | None:
    value = upstream.get(key)
    return Path(value) if value else None


def _stage(name: str, spec: RunSpec | Mapping[str, Any],
           body: Callable[[RunSpec, UnisemConfig, RunLayout], T]) -> T:
    """Run one stage's ``body(spec, config, layout)`` under its record (a bad config is recorded too)."""
    spec = _spec(spec)
    layout = spec.layout()
    return recorded(layout, name, lambda: body(spec, spec.config(), layout))


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


def validate(spec: RunSpec | Mapping[str, Any]) -> Validated:
    """Resolve the input data and run the quality gate (Great Expectations on Spark) over it.

    As the first stage of a run it clears the run's stage records, so a rerun reports only itself.
    """
    spec = _spec(spec)
    clear_records(spec.layout())

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Validated:
        from unisem.quality.gate import REPORT_FILE, VERDICT_FILE, gate_reasons

        home = Path(spec.home)
        write_effective_config(spec)
        catalog, interactions = resolve_inputs(cfg, home)
        if cluster.spark_mode(cfg.orchestration.spark_master) == "library":
            from unisem.quality.gate import run_gate

            result = run_gate(cfg, catalog, interactions, layout.quality, home=home)
            verdict_path, report_path = Path(result.verdict_path), Path(result.report_path)
        else:
            # jobs/validate.py = `unisem validate`: exit 3 is a failed verdict, which the proceed stage handles.
            cluster.spark_submit(
                cfg.orchestration.spark_master,
                "validate.py",
                ["--catalog", str(catalog), "--interactions", str(interactions), "--out", str(layout.quality),
                 "--home", spec.home, *spec.config_args()],
                layout.pipeline / "logs" / "validate.log",
                ok_codes=(0, 3),
                **_spark_timeouts(cfg),
            )
            verdict_path, report_path = layout.quality / VERDICT_FILE, layout.quality / REPORT_FILE
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

    return _stage("validate", spec, body)


def proceed(spec: RunSpec | Mapping[str, Any], validated: Mapping[str, Any]) -> Proceeding:
    """Decide whether the run goes on: a ``fail`` verdict stops it before any training.

    A stage of its own rather than part of ``validate``: in the DAG it is the short-circuit, whose return
    value is only its truth (a false one skips everything downstream, visibly), while ``validate`` must hand
    its typed outputs (the input and verdict paths) to ``features``; and validate retries Spark failures,
    which this decision never needs. Named for what it answers: does the run proceed on this verdict.
    """

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Proceeding:
        verdict = _need(validated, "verdict", "proceed")
        return {"proceed": verdict in PROCEED_VERDICTS, "verdict": verdict,
                "reasons": list(validated.get("reasons") or ())}

    return _stage("proceed", spec, body)


def previous_features(home: Path, run_id: str) -> Path | None:
    """The features folder of the latest earlier run, whose id vocabularies the new run keeps stable."""
    runs = home / "runs"
    if not runs.is_dir():
        return None
    earlier = sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name < run_id
                     and (RunLayout(p).features / "manifest.json").exists())
    return RunLayout(runs / earlier[-1]).features if earlier else None


def features(spec: RunSpec | Mapping[str, Any], validated: Mapping[str, Any]) -> Featured:
    """Id vocabularies, per-user sequences and splits, item texts (Spark) -> ``layout.features``."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Featured:
        catalog, interactions = _path(validated, "catalog", "features"), _path(validated, "interactions", "features")
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
                "items": counts.get("items"), "users": counts.get("users"),
                "verdict_path": validated.get("verdict_path")}

    return _stage("features", spec, body)


def embed(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any]) -> Embedded:
    """Text embeddings of every item (cached per text and encoder) -> ``layout.embeddings``."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Embedded:
        from unisem.data.dataset import read_item_texts
        from unisem.text.embeddings import embed_item_texts

        features_dir = _path(featured, "features_dir", "embed")
        out = embed_item_texts(read_item_texts(features_dir).texts, layout.embeddings, cfg.text,
                               cache_dir=embedding_cache_dir(Path(spec.home)), features_dir=features_dir)
        return {"embeddings_dir": str(out)}

    return _stage("embed", spec, body)


HISTORY_FILE = "history.json"


def _train_outputs(result: Any, history_path: Path, features_dir: Path, embeddings_dir: Path,
                   verdict_path: Path | None, tracking_run_id: str | None) -> Trained:
    """The per-epoch history goes to a file (it outgrows an XCom); downstream stages get its path."""
    write_text_atomic(history_path, json.dumps([dict(h) for h in result.history], indent=1, default=float))
    return {
        "model_dir": str(result.model_dir),
        "best_epoch": int(result.best_epoch),
        "best_metrics": {k: float(v) for k, v in dict(result.best_metrics).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "history_path": str(history_path),
        "features_dir": str(features_dir),
        "embeddings_dir": str(embeddings_dir),
        "verdict_path": str(verdict_path) if verdict_path is not None else None,
        "tracking_run_id": tracking_run_id,
    }


def read_history(trained: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The training history of a train stage's outputs, from the file at ``history_path``."""
    path = _path(trained, "history_path", "read the training history")
    try:
        return list(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise StageError(f"{path}: cannot read the training history: {exc}") from exc


def _train_library(cfg: UnisemConfig, spec: RunSpec, features_dir: Path, embeddings_dir: Path,
                   verdict_path: Path | None) -> Trained:
    """Train under a tracking run started now, epochs logged into it live; registration finishes the run."""
    from unisem.registry.tracking import live_training_run
    from unisem.train.ray_trainer import train_with_ray

    layout = spec.layout()
    with live_training_run(cfg, spec.run_id, features_dir, verdict_path) as (run_id, on_epoch):
        result = train_with_ray(cfg, features_dir, embeddings_dir, layout.training, on_epoch=on_epoch)
    return _train_outputs(result, layout.training / HISTORY_FILE, features_dir, embeddings_dir, verdict_path, run_id)


def train(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], embedded: Mapping[str, Any]) -> Trained:
    """Ray Train (local instance, or a Ray Job on the cluster at orchestration.ray_address) -> the model folder."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Trained:
        features_dir = _path(featured, "features_dir", "train")
        embeddings_dir = _path(embedded, "embeddings_dir", "train")
        verdict_path = _maybe_path(featured, "verdict_path")
        if cluster.ray_mode(cfg.orchestration.ray_address) == "library":
            return _train_library(cfg, spec, features_dir, embeddings_dir, verdict_path)
        # On the cluster the same stage runs as the Ray Job's entry point; an explicit ray_address (flag, DAG
        # param) is dropped there, so the job's driver joins the cluster it runs in through the RAY_ADDRESS Ray
        # sets for it (host:port, never the dashboard URL). Its record is the result.
        job_spec = spec.without("orchestration.ray_address")
        upstream = {"features_dir": str(features_dir), "embeddings_dir": str(embeddings_dir),
                    "verdict_path": str(verdict_path) if verdict_path else None}
        entry = ["unisem", "stage", "train", *job_spec.cli_args(), "--upstream", json.dumps(upstream)]
        timeouts = cfg.orchestration.timeouts
        job_id = cluster.submit_ray_job(cfg.orchestration.ray_address, entry, name=f"unisem-train-{spec.run_id}",
                                        env={"UNISEM_HOME": spec.home}, log_path=layout.pipeline / "logs" / "train.log",
                                        timeout_s=timeouts.ray_job_s, auth_token=cfg.orchestration.ray_auth_token,
                                        connect_timeout_s=timeouts.service_connect_s)
        record = read_records(layout).get("train") or {}
        if record.get("status") != "ok":
            raise StageError(f"Ray job {job_id} finished but wrote no train result in {layout.pipeline}")
        return {**record["outputs"], "ray_job_id": job_id}

    return _stage("train", spec, body)


def evaluate(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], trained: Mapping[str, Any]) -> Evaluated:
    """Full ranking + sampled-99 + slices + diagnostics on the test split -> ``layout.evaluation``."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Evaluated:
        from unisem.evaluate.saved_model import evaluate_model_dir

        report = evaluate_model_dir(_path(trained, "model_dir", "evaluate"), _path(featured, "features_dir", "evaluate"),
                                    cfg, split="test", out_dir=layout.evaluation, history=read_history(trained))
        return {"metrics_path": str(layout.evaluation / "metrics.json"), "evaluation_dir": str(layout.evaluation),
                "metrics": dict(report["metrics"])}

    return _stage("evaluate", spec, body)


def register(spec: RunSpec | Mapping[str, Any], trained: Mapping[str, Any], evaluated: Mapping[str, Any]) -> Registered:
    """Log the run to MLflow and register the model as a new version with alias ``challenger``: one version
    per pipeline run id (``unisem.registry.registration.log_and_register``), every input from upstream."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> Registered:
        from unisem.registry.registration import log_and_register, registration_outputs
        from unisem.train import TrainResult

        result = TrainResult(model_dir=_path(trained, "model_dir", "register"),
                             best_epoch=int(trained.get("best_epoch", 0)),
                             best_metrics=dict(trained.get("best_metrics") or {}),
                             history=read_history(trained))
        reg = log_and_register(
            cfg, result, spec.run_id, record_dir=layout.registry,
            features_dir=_maybe_path(trained, "features_dir"), embeddings_dir=_maybe_path(trained, "embeddings_dir"),
            metrics_path=_path(evaluated, "metrics_path", "register"),
            plots_dir=_maybe_path(evaluated, "evaluation_dir"), verdict_path=_maybe_path(trained, "verdict_path"),
            run_id=trained.get("tracking_run_id") or None,
        )
        return registration_outputs(cfg, reg)

    return _stage("register", spec, body)


def promote(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], embedded: Mapping[str, Any],
            registered: Mapping[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the challenger only if it beats the champion on the promotion metric."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> dict[str, Any]:
        from unisem.registry.promotion import promote_if_better

        decision = promote_if_better(cfg, _path(featured, "features_dir", "promote"),
                                     embeddings_dir=_path(embedded, "embeddings_dir", "promote"),
                                     record_dir=layout.registry,
                                     challenger_version=str(_need(registered, "version", "promote")))
        return json.loads(json.dumps(decision._asdict(), default=str))

    return _stage("promote", spec, body)


def recommend(spec: RunSpec | Mapping[str, Any], featured: Mapping[str, Any], promoted: Mapping[str, Any]) -> dict[str, Any]:
    """Top-K for every user of the features with whichever version holds ``champion`` after ``promote``
    (Spark) -> ``layout.recommendations`` and ``<home>/published/recommendations`` (the DAG's Asset)."""

    def body(spec: RunSpec, cfg: UnisemConfig, layout: RunLayout) -> dict[str, Any]:
        from unisem.home import published_recommendations_dir

        # ``promoted`` only orders the stages: the alias is read from the registry
        features_dir = _path(featured, "features_dir", "recommend")
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

    return _stage("recommend", spec, body)


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
        summary["config"] = {"file": spec.config_path, "overrides": list(spec.overrides), "values": dict(spec.values)}
        summary["quality_published"] = publish_quality_report(spec).get("published")
        with atomic_dir(layout.report) as tmp:
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
            (tmp / "summary.md").write_text(render_markdown(summary))
            if "promote" in expected or "register" in expected:
                (tmp / COMPARE_PAGE).write_text(compare_page(spec, layout))
            (tmp / "summary.html").write_text(render_html(summary, layout.report))
        pages = [layout.report / "summary.html", layout.report / COMPARE_PAGE]
        from unisem.registry.tracking import attach_report_pages

        attach_report_pages(spec.config(), summary.get("model") or {}, pages)
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


def write_effective_config(spec: RunSpec | Mapping[str, Any]) -> Path:
    """The resolved config of this run as JSON beside its outputs (what the run actually used)."""
    spec = _spec(spec)
    return write_text_atomic(spec.layout().root / "config.json", json.dumps(to_dict(spec.config()), indent=2))


# Stage name -> function, for ``unisem stage`` (the entry point of Ray Jobs and manual reruns); the names
# are ``outputs.STAGES``, checked here so a stage added to one and not the other fails at import.
STAGE_FUNCTIONS: dict[str, Callable[..., Any]] = {name: globals()[name] for name in STAGES}
