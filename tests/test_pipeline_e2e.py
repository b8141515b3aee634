"""The nightly DAG end to end through real Airflow (``unisem run`` -> ``airflow dags test``), on small data.

Three runs, each in its own UNISEM_HOME (own Airflow SQLite database, own MLflow store):
- clean demo data: every task succeeds, a model version is registered and becomes champion, the report
  and the published quality report exist; registering the same run again adds no version;
- dirty data (half the titles missing): the gate fails, Airflow skips everything up to ``promote``, the
  report says why, nothing is registered;
- missing input files: the pre-flight of ``unisem run`` stops it before Airflow starts.
The first two run concurrently (they are mostly waiting on JVM, Ray and Airflow start-up), so the module
takes about as long as the clean run.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
DATE = "2026-03-01"
RUN_ID = "2026-03-01T00-00-00"
SMALL = """\
data:
  demo: {items: 300, users: 200}
training: {max_epochs: 2, show_progress: false}
quantizer: {codebook_size: 16, kmeans_iters: 5}
text: {show_progress: false}
orchestration: {retries: 0}
"""
UNISEM = [sys.executable, "-c", "import sys; from unisem.cli import main; sys.exit(main())"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "UNISEM_", "MLFLOW_", "RAY_ADDRESS", "SPARK_MASTER"))}
    # Two runs share the machine at once: small Spark drivers are plenty for a few hundred items.
    env.update({"UNISEM_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "UNISEM_SPARK_DRIVER_MEMORY": "1g"})
    return env


def _start(home: Path, config: Path, *args: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    out = open(home.parent / f"{home.name}.out", "w")
    return subprocess.Popen([*UNISEM, "run", "--config", str(config), "--date", DATE, *args], env=_env(home),
                            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, text=True)


def _finish(proc: subprocess.Popen, home: Path, timeout: int = 1200) -> tuple[int, str]:
    rc = proc.wait(timeout=timeout)
    return rc, (home.parent / f"{home.name}.out").read_text()


def _dirty_copy(home: Path, out: Path) -> tuple[Path, Path]:
    """The small demo data with half of the catalog titles removed: a clear gate failure."""
    from unisem.config import load_config
    from unisem.data.demo import ensure_demo_data

    demo = Path(ensure_demo_data(load_config(None, ["data.demo.items=300", "data.demo.users=200"]).data.demo, home))
    catalog = pq.read_table(demo / "catalog.parquet")
    keep = pa.array([i % 2 == 0 for i in range(catalog.num_rows)])
    titles = pc.if_else(keep, catalog["title"], pa.scalar(None, pa.string()))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(catalog.set_column(catalog.schema.get_field_index("title"), "title", titles), out / "catalog.parquet")
    pq.write_table(pq.read_table(demo / "interactions.parquet"), out / "interactions.parquet")
    return out / "catalog.parquet", out / "interactions.parquet"


def _task_states(home: Path) -> dict[str, str]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'unisem_nightly'").fetchall()
    return dict(rows)


def _dag_run_states(home: Path) -> list[str]:
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        return [r[0] for r in db.execute("SELECT state FROM dag_run WHERE dag_id = 'unisem_nightly'").fetchall()]


def _versions(home: Path) -> list:
    import mlflow

    db = home / "mlflow.db"
    if not db.exists():
        return []
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # never the process-wide registry URI
    return list(client.search_model_versions("name='unisem'"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    config = base / "small.yaml"
    config.write_text(SMALL)
    clean_home, dirty_home = base / "clean", base / "dirty"
    catalog, interactions = _dirty_copy(base / "scratch", base / "dirty-data")
    clean = _start(clean_home, config)
    dirty = _start(dirty_home, config, "--catalog", str(catalog), "--interactions", str(interactions))
    try:
        dirty_result = _finish(dirty, dirty_home)
        clean_result = _finish(clean, clean_home)
    finally:
        for proc in (clean, dirty):
            if proc.poll() is None:
                proc.kill()
    return {"config": config, "clean": (clean_home, *clean_result), "dirty": (dirty_home, *dirty_result)}


def _summary(home: Path) -> dict:
    return json.loads((home / "runs" / RUN_ID / "report" / "summary.json").read_text())


def test_clean_run_trains_registers_and_promotes(runs):
    home, rc, out = runs["clean"]
    assert rc == 0, out[-4000:]
    summary = _summary(home)
    assert summary["status"] == "succeeded", summary
    assert set(summary["stages"].values()) == {"ok"}
    assert summary["gate"]["verdict"] in ("pass", "warn")
    assert 0.0 <= summary["metrics"]["full/NDCG@10"] <= 1.0 and "sampled-99/NDCG@10" in summary["metrics"]
    assert summary["model"]["version"] == "1" and summary["model"]["reused"] is False
    assert summary["promotion"]["promoted"] is True
    assert _dag_run_states(home) == ["success"]
    assert set(_task_states(home).values()) == {"success", "skipped"}  # the watcher skips when all is well
    assert _task_states(home)["watcher"] == "skipped"
    run = home / "runs" / RUN_ID
    for path in ("report/summary.md", "report/summary.html", "quality/report.html", "quality/verdict.json",
                 "evaluation/metrics.json", "config.json"):
        assert (run / path).exists(), path
    assert (home / "published" / "quality" / "latest" / "report.html").exists()
    # What `make run` prints: where things are and how to look at them.
    for text in ("registered model: unisem version 1", "champion alias: unisem@champion -> version 1",
                 "mlflow ui --backend-store-uri sqlite:///", "airflow standalone", "quality report:"):
        assert text in out, text
    versions = _versions(home)
    assert [(str(v.version), v.tags.get("pipeline_run_id")) for v in versions] == [("1", RUN_ID)]


def test_clean_run_writes_top_k_for_every_user_with_the_champion(runs):
    """The recommend stage: one row per (user, rank) for every user of the features, by champion version 1,
    under the run folder and at the published location (the DAG's Asset)."""
    from unisem.data.dataset import load_features

    home, rc, out = runs["clean"]
    assert rc == 0, out[-4000:]
    run = home / "runs" / RUN_ID
    users = set(load_features(run / "features").user_ids)
    table = pq.read_table(run / "recommendations").to_pandas()
    assert list(table.columns) == ["user_id", "rank", "item_id", "score", "model_version", "run_id", "source"]
    assert set(table["user_id"]) == users
    assert not table.duplicated(["user_id", "rank"]).any() and not table.duplicated(["user_id", "item_id"]).any()
    assert (table.groupby("user_id")["rank"].apply(sorted).apply(list) == [list(range(1, 11))] * len(users)).all()
    assert set(table["model_version"]) == {"1"} and set(table["run_id"]) == {RUN_ID}
    assert set(table["source"]) == {"model"}  # every user of the features has a history the champion knows
    ordered = table.sort_values(["user_id", "rank"])
    assert (ordered.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    manifest = json.loads((run / "recommendations" / "_manifest.json").read_text())
    assert manifest["users"] == manifest["users_written"] == len(users) and manifest["rows"] == 10 * len(users)
    published = home / "published" / "recommendations"
    assert pq.read_table(published).num_rows == len(table)
    assert _summary(home)["recommendations"]["published"] == str(published)
    assert _task_states(home)["recommend"] == "success"


def test_clean_run_writes_curves_pages_and_a_training_run_with_live_epochs(runs):
    import mlflow

    home, _, out = runs["clean"]
    run = home / "runs" / RUN_ID
    assert (run / "evaluation" / "training_curves.png").stat().st_size > 1000  # the DAG passes the history file
    summary_page = (run / "report" / "summary.html").read_text()
    assert "<pre" not in summary_page and 'href="compare.html"' in summary_page
    compare = (run / "report" / "compare.html").read_text()
    assert "<pre" not in compare and "https://" not in compare and "http://" not in compare
    assert RUN_ID in compare and "<svg" in compare
    # live progress in what `make run` prints, and the summary page's path
    assert "epoch 1/2 loss" in out and "epoch 2/2 loss" in out, out[-3000:]
    assert "promotion of unisem version 1:" in out and f"summary page: {run / 'report' / 'summary.html'}" in out
    log = (home / "logs" / f"unisem_nightly-{RUN_ID}.log").read_text()
    assert "Skipping registering function" not in log and "epoch 2/2 loss" in log

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("unisem", "1")
    assert version.description.startswith("PROMOTED to champion")
    assert not [k for k in version.tags if k.startswith("metric.") and "@" not in k and "_at_10" not in k]
    mlrun = client.get_run(version.run_id)
    assert mlrun.info.status == "FINISHED" and mlrun.data.tags["pipeline_run_id"] == RUN_ID
    assert [m.step for m in client.get_metric_history(version.run_id, "loss")] == [1, 2]  # logged per epoch
    inputs = {d.dataset.name: d for d in mlrun.inputs.dataset_inputs}
    assert set(inputs) == {"features", "quality_verdict"}
    assert mlrun.data.tags["data_version"].startswith(inputs["features"].dataset.digest)
    assert client.get_experiment(mlrun.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "report")}
    assert {"report/summary.html", "report/compare.html"} <= artifacts
    docs = run / "quality" / "data_docs"
    pages = list(docs.rglob("*.html"))
    remote = re.compile(r"""<(?:link|script|img)\b[^>]*(?:href|src)\s*=\s*["']?(?:https?:)?//""", re.I)
    assert pages and not [p for p in pages if remote.search(p.read_text())]
    assert any(RUN_ID in p.as_posix() or RUN_ID in p.read_text() for p in pages)  # validations carry the run id


def test_registering_the_same_run_again_adds_no_version(runs):
    home, _, _ = runs["clean"]
    proc = subprocess.run([*UNISEM, "stage", "register", "--run-id", RUN_ID, "--config", str(runs["config"])],
                          env=_env(home), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["version"] == "1" and out["reused"] is True
    assert len(_versions(home)) == 1


def test_dirty_data_stops_at_the_gate_and_registers_nothing(runs):
    home, rc, out = runs["dirty"]
    assert rc == 3, out[-4000:]  # EXIT_GATE_FAILED
    summary = _summary(home)
    assert summary["status"] == "stopped_at_gate"
    assert summary["gate"]["verdict"] == "fail"
    assert any("title_share" in r and r.startswith("fail") for r in summary["gate"]["reasons"]), summary["gate"]
    assert summary["model"] == {} and summary["promotion"] == {}
    states = _task_states(home)
    assert states["validate"] == states["proceed"] == states["report"] == "success"
    for task in ("features", "embed", "train", "evaluate", "register", "promote", "recommend"):
        assert states[task] == "skipped", (task, states)
    assert _dag_run_states(home) == ["success"]
    run = home / "runs" / RUN_ID
    assert (run / "quality" / "report.html").exists() and not (run / "features").exists()
    assert "stopped at the quality gate" in (run / "report" / "summary.md").read_text()
    assert "fail: title_share" in out and "champion alias: unisem@champion -> none yet" in out
    assert _versions(home) == []


def test_missing_inputs_stop_the_run_in_the_pre_flight_before_airflow(runs, tmp_path):
    """A task failing inside the DAG (watcher, report naming the stage, no retries): test_bad_inputs.py."""
    home = tmp_path / "broken"
    proc = _start(home, runs["config"], "--catalog", str(tmp_path / "missing.parquet"),
                  "--interactions", str(tmp_path / "missing-interactions.parquet"))
    rc, out = _finish(proc, home, timeout=600)
    assert rc == 1, out[-3000:]
    assert f"data.catalog: {tmp_path / 'missing.parquet'} does not exist" in out
    assert not (home / "airflow").exists() and not (home / "runs").exists()
