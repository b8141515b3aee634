"""``unisem run`` (the nightly DAG once, through Airflow) and ``unisem stage`` (one stage of a run, alone).

``unisem run`` is what ``make run`` calls: it needs nothing started by hand. It prepares an Airflow home on
SQLite under UNISEM_HOME, makes sure the input data exist, runs the DAG with ``airflow dags test`` and then
says where everything is and how to look at it.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers, common: argparse.ArgumentParser) -> None:
    from unisem.pipeline.outputs import STAGES

    p = subparsers.add_parser(
        "run", parents=[common], help="run the nightly pipeline once through Airflow",
        description="Runs one DAG run (airflow dags test, SQLite metadata under UNISEM_HOME; nothing to start by "
        "hand) on the configured data, else the demo data, then prints the run summary and where to look. "
        "Exit status: 0 succeeded, 3 stopped at the quality gate, 1 failed.")
    p.add_argument("--date", default=None,
                   help="logical date (ISO); the same date again overwrites that run (default: now, UTC)")
    p.add_argument("--dag", default="unisem_nightly", choices=("unisem_nightly", "unisem_quality_report"))
    p.add_argument("--catalog", default="", help="catalog Parquet (default: data.catalog, else demo data)")
    p.add_argument("--interactions", default="", help="interactions Parquet file or folder")
    p.add_argument("--spark-master", default="",
                   help="e.g. spark://host:7077 (default: $SPARK_MASTER, else orchestration.spark_master)")
    p.add_argument("--ray-address", default="",
                   help="Ray dashboard for Ray Jobs, e.g. http://host:8265 (default: $RAY_ADDRESS, else the config's)")
    p.add_argument("--mlflow-uri", default="",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else registry.tracking_uri)")
    p.set_defaults(handler=_run)

    s = subparsers.add_parser("stage", parents=[common], help="run one pipeline stage of a run (Ray Job entry point)")
    s.add_argument("name", choices=STAGES)
    s.add_argument("--run-id", required=True, help="the run folder under UNISEM_HOME/runs")
    s.add_argument("--home", default=None, help="UNISEM_HOME of the run (default: $UNISEM_HOME)")
    s.add_argument("--upstream", default=None,
                   help="JSON object with the upstream stages' outputs (default: what this run's earlier stages "
                        "recorded, so `unisem stage register --run-id X` reruns one stage of run X)")
    s.set_defaults(handler=_stage)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _champion(cfg) -> str:
    """What alias ``champion`` points at, asked of the store this run used (a server too): ``version N``,
    ``none yet``, or why it could not be asked. A local store that does not exist is not created for this."""
    from pathlib import Path

    from unisem.registry.registration import CHAMPION
    from unisem.registry.tracking import TrackingUnavailable, client, local_artifact_root, tracking_uri

    uri = tracking_uri(cfg)
    if local_artifact_root(uri) is not None and not Path(uri[len("sqlite:///"):]).exists():
        return "none yet (no registry yet)"
    try:
        store = client(cfg)
    except TrackingUnavailable as exc:
        return f"unknown ({exc})"
    try:
        return "version " + str(store.get_model_version_by_alias(cfg.registry.model_name, CHAMPION).version)
    except Exception as exc:  # noqa: BLE001 - no such model or alias: MLflow raises RESOURCE_DOES_NOT_EXIST
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            return "none yet"
        return f"unknown ({type(exc).__name__}: {str(exc)[:200]})"


def run_conf(args: argparse.Namespace, config_path: str) -> dict:
    """The DAG run conf of ``unisem run``: only what was given. An empty value would replace the DAG param's
    default (taken from SPARK_MASTER / RAY_ADDRESS / MLFLOW_TRACKING_URI) with nothing."""
    given = {"config_file": config_path, "catalog": args.catalog, "interactions": args.interactions,
             "spark_master": args.spark_master}
    if args.dag == "unisem_nightly":
        given.update({"ray_address": args.ray_address, "mlflow_uri": args.mlflow_uri})
    conf: dict = {k: v.strip() for k, v in given.items() if v and v.strip()}
    if args.overrides:
        conf["overrides"] = list(args.overrides)
    return conf


def service_overrides(args: argparse.Namespace) -> list[str]:
    """The explicit service flags as config overrides, so this process asks the same services as the run."""
    from unisem.config.services import explicit_overrides

    return explicit_overrides([("orchestration.spark_master", args.spark_master),
                               ("orchestration.ray_address", getattr(args, "ray_address", "")),
                               ("registry.tracking_uri", getattr(args, "mlflow_uri", ""))])


def _run(args: argparse.Namespace) -> int:
    import json
    from datetime import datetime, timezone
    from pathlib import Path

    from unisem.cli import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_OK, config_from_args
    from unisem.home import RunLayout, unisem_home
    from unisem.pipeline import local_airflow
    from unisem.pipeline.spec import run_id_for
    from unisem.pipeline.summary import STOPPED_AT_GATE, SUCCEEDED

    from unisem.config import load_config

    config_from_args(args)  # a bad config stops here, before Airflow starts
    cfg = load_config(args.config, [*(args.overrides or ()), *service_overrides(args)])
    home = unisem_home()
    config_path = str(Path(args.config).resolve()) if args.config else ""
    env = local_airflow.airflow_env(home, config_path or None)
    _say(f"unisem run: home {home}")
    from unisem.pipeline.preflight import preflight

    checked = preflight(config_path, list(args.overrides or ()), {
        "catalog": args.catalog, "interactions": args.interactions, "spark_master": args.spark_master,
        "ray_address": args.ray_address, "mlflow_uri": args.mlflow_uri})  # before Airflow: fails in seconds
    _say(f"  pre-flight: inputs, config and {len(checked.services)} services checked in {checked.seconds:.1f}s")
    if local_airflow.ensure_db(home, env):
        _say(f"  airflow: created the metadata database in {local_airflow.airflow_home(home)}")

    if not (args.catalog or cfg.data.catalog):
        from unisem.data.demo import ensure_demo_data

        _say(f"  data: demo data in {ensure_demo_data(cfg.data.demo, home)}")
    else:
        _say(f"  data: {args.catalog or cfg.data.catalog} + {args.interactions or cfg.data.interactions}")

    logical = args.date or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    prefix = "quality-" if args.dag == "unisem_quality_report" else ""
    run_id = prefix + run_id_for(logical)
    layout = RunLayout.for_run(run_id, home)
    conf = run_conf(args, config_path)
    log_path = home / "logs" / f"{args.dag}-{run_id}.log"
    _say(f"  airflow dags test {args.dag} {logical}  (run {run_id}; full log: {log_path})")
    run = local_airflow.dags_test(args.dag, logical, env, log_path, conf=conf, progress=lambda t: _say("    " + t))
    _say(f"  DAG run {run.dag_state or 'did not finish'} in {run.seconds:.0f}s")

    summary_path = layout.report / "summary.json"
    if not summary_path.exists():
        _say(f"unisem run: no run report at {summary_path}; see {log_path}")
        return EXIT_ERROR
    summary = json.loads(summary_path.read_text())
    _print_summary(summary, layout, cfg, home, config_path, log_path)
    if summary["status"] == SUCCEEDED and run.dag_state == "success":
        return EXIT_OK
    if summary["status"] == STOPPED_AT_GATE:
        return EXIT_GATE_FAILED
    return EXIT_ERROR


def _print_summary(summary: dict, layout, cfg, home, config_path: str, log_path) -> None:
    from unisem.pipeline import local_airflow

    _say()
    _say(f"Run {summary['run_id']}: {summary['status']}")
    if summary.get("failed_stage"):
        _say(f"  failed at {summary['failed_stage']}: {summary.get('error')}")
    gate = summary.get("gate") or {}
    _say(f"  quality gate: {gate.get('verdict')}")
    for reason in (gate.get("reasons") or [])[:10]:
        _say(f"    - {reason}")
    if gate.get("report"):
        _say(f"  quality report: {gate['report']}")
    if summary.get("quality_published"):
        _say(f"  published quality report: {summary['quality_published']}")
    metrics = summary.get("metrics") or {}
    if metrics:
        shown = {k: v for k, v in metrics.items() if k.endswith(("NDCG@10", "HR@10", "MRR"))} or metrics
        _say("  test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    model = summary.get("model") or {}
    if model:
        again = " (already registered for this date; no duplicate)" if model.get("reused") else ""
        _say(f"  registered model: {model.get('model_name')} version {model.get('version')}{again}")
        _say(f"  MLflow run: {model.get('mlflow_run_id')} in {model.get('tracking_uri')}")
    promo = summary.get("promotion") or {}
    if promo:
        _say(f"  promotion: {'promoted to champion' if promo.get('promoted') else 'not promoted'}"
             f" - {promo.get('reason')}")
        for g in promo.get("guardrails") or ():
            state = "no users" if g.get("drop") is None else ("BREACHED" if g.get("breached") else "ok")
            _say(f"    guardrail {g.get('slice')}: {state}")
    from unisem.registry.registration import CHAMPION

    champion = _champion(cfg)
    _say(f"  champion alias: {cfg.registry.model_name}@{CHAMPION} -> {champion}")
    recs = summary.get("recommendations") or {}
    if recs:
        _say(f"  recommendations: top-K for {recs.get('users')} users by version {recs.get('model_version')}"
             f" -> {recs.get('published')}")
    _say(f"  run folder: {layout.root}")
    if (layout.report / "compare.html").exists():
        _say(f"  challenger vs champion: {layout.report / 'compare.html'}")
    _say(f"  summary page: {layout.report / 'summary.html'}")
    _say()
    _say("Look at it:")
    uri = model.get("tracking_uri")
    if uri and uri.startswith(("http://", "https://")):
        _say(f"  MLflow server: {uri.rstrip('/')}/#/models/{cfg.registry.model_name}")
    elif uri:
        _say(f"  mlflow ui --backend-store-uri {uri}")
    _say(f"  {local_airflow.standalone_hint(home, config_path or None)}")
    _say(f"  airflow log of this run: {log_path}")


def _stage(args: argparse.Namespace) -> int:
    import inspect
    import json
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.home import unisem_home
    from unisem.pipeline import stages
    from unisem.pipeline.records import recorded_outputs
    from unisem.pipeline.spec import make_spec

    config_from_args(args)  # validate before doing anything
    home = Path(args.home).resolve() if args.home else unisem_home()
    spec = make_spec(args.run_id, str(Path(args.config).resolve()) if args.config else None,
                     args.overrides or (), home)
    if args.upstream is None:
        upstream = recorded_outputs(spec.layout())
    else:
        try:
            upstream = json.loads(args.upstream)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--upstream: not valid JSON: {exc}") from exc
        if not isinstance(upstream, dict):
            raise ValueError("--upstream: expected a JSON object")
    fn = stages.STAGE_FUNCTIONS[args.name]
    # Every upstream parameter gets the same mapping: each stage only reads the keys it needs from it.
    n_upstream = sum(1 for p in list(inspect.signature(fn).parameters.values())[1:]
                     if p.default is inspect.Parameter.empty)
    result = fn(spec, *([upstream] * n_upstream))
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
    return 0
