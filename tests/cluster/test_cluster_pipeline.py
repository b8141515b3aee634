"""The nightly DAG on real cluster services, and the fault drills, asserted from each service's own side.

One cluster for the module (see conftest.py); the tests run in file order and build on each other: the
first night's outputs are the reference of the Ray drill and the subject of the rerun drill.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from . import services as sv
from .drills import drill
from unisem.pipeline.spec import run_id_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NIGHT_1 = "2026-01-01T00:00:00+00:00"
NIGHT_2 = "2026-01-02T00:00:00+00:00"
COMMAND = "pytest -m cluster tests/cluster"
STATE: dict = {}


def _mlflow(cluster):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=cluster.mlflow_uri, registry_uri=cluster.mlflow_uri)


def _versions(cluster, run_id: str):
    return [mv for mv in _mlflow(cluster).search_model_versions("name='unisem'")
            if (mv.tags or {}).get("pipeline_run_id") == run_id]


def _records(cluster, run_id: str) -> dict:
    from unisem.home import RunLayout
    from unisem.pipeline.records import read_records

    return read_records(RunLayout.for_run(run_id, cluster.home))


def _task_log(cluster, dag_run_id: str, task_id: str) -> str:
    logs = sorted((cluster.root / "airflow" / "logs").glob(f"dag_id=unisem_nightly/run_id={dag_run_id}/"
                                                           f"task_id={task_id}/attempt=*.log"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def _ti(cluster, dag_run_id: str, task_id: str) -> dict:
    return cluster.api(f"/api/v2/dags/unisem_nightly/dagRuns/{dag_run_id}/taskInstances/{task_id}")


def _seconds(ti: dict) -> float:
    from datetime import datetime

    start, end = (datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def test_nightly_on_cluster(cluster):
    with drill("nightly_on_cluster", COMMAND) as row:
        dag_run_id = cluster.trigger(NIGHT_1)
        run = cluster.wait_run(dag_run_id)
        states = cluster.task_states(dag_run_id)
        failed = {stage: rec.get("error") for stage, rec in _records(cluster, run_id_for(NIGHT_1)).items()
                  if rec.get("status") != "ok"}
        assert run["state"] == "success", (states, failed)
        assert all(s == "success" for t, s in states.items() if t != "watcher"), states
        run_id = run_id_for(NIGHT_1)
        STATE["night1"] = {"dag_run_id": dag_run_id, "run_id": run_id, "validate_s": _seconds(_ti(cluster, dag_run_id, "validate"))}

        # Spark: both jobs ran on the standalone master, named after the job
        apps = sv.http_json(f"{cluster.spark_ui}/json")["completedapps"]
        names = [a["name"] for a in apps]
        assert "unisem-validate" in names and "unisem-build_features" in names, names
        # their output is in the Airflow task log, line by line
        assert "[spark validate]" in _task_log(cluster, dag_run_id, "validate")

        # Ray: the train stage was a Ray Job on the head, and it succeeded
        from ray.job_submission import JobSubmissionClient

        jobs = JobSubmissionClient(cluster.ray_dashboard,
                                   headers={"Authorization": f"Bearer {cluster.ray_token}"}).list_jobs()
        train_jobs = [j for j in jobs if (j.submission_id or "").startswith(f"unisem-train-{run_id}")]
        assert [str(getattr(j.status, "value", j.status)) for j in train_jobs] == ["SUCCEEDED"], jobs
        assert f"[ray {train_jobs[0].submission_id}]" in _task_log(cluster, dag_run_id, "train")

        # MLflow server: the run and one version with both aliases (the first model becomes champion)
        versions = _versions(cluster, run_id)
        assert len(versions) == 1
        mv = _mlflow(cluster).get_model_version("unisem", versions[0].version)
        assert {"challenger", "champion"} <= set(mv.aliases), mv.aliases
        mlrun = _mlflow(cluster).get_run(mv.run_id)
        assert mlrun.info.status == "FINISHED" and "test/full/NDCG_at_10" in mlrun.data.metrics
        # nothing was written to a local store
        assert not (cluster.home / "mlflow.db").exists()
        STATE["night1"]["version"] = mv.version
        row["outcome"] = (f"DAG run success via the Airflow REST API; Spark apps {sorted(set(names))}; Ray job "
                          f"{train_jobs[0].submission_id} SUCCEEDED; MLflow version {mv.version} aliases "
                          f"{sorted(mv.aliases)}; test full/NDCG@10 {mlrun.data.metrics['test/full/NDCG_at_10']:.4f}")
        row["seconds"] = round(sum(_seconds(_ti(cluster, dag_run_id, t)) for t in states if t != "watcher"), 1)


def test_rerun_same_date(cluster):
    if "night1" not in STATE:
        pytest.skip("needs the first night")
    night = STATE["night1"]
    with drill("rerun_same_date", COMMAND) as row:
        start = time.monotonic()
        cluster.clear(night["dag_run_id"], ["train"])  # train and everything after it, for the same date
        run = cluster.wait_run(night["dag_run_id"])
        assert run["state"] == "success", cluster.task_states(night["dag_run_id"])
        versions = _versions(cluster, night["run_id"])
        assert len(versions) == 1, [v.version for v in versions]
        records = _records(cluster, night["run_id"])
        from unisem.home import RunLayout

        layout = RunLayout.for_run(night["run_id"], cluster.home)
        registration = json.loads((layout.registry / "registration.json").read_text())
        tags = versions[0].tags
        # the registered model is the one the rerun trained and evaluated: same bytes, same test metrics
        assert tags["model_sha256"] == registration["model_sha256"]
        metrics = json.loads((layout.evaluation / "metrics.json").read_text())
        assert tags["metric.test/full/NDCG_at_10"] == f"{metrics['metrics']['full/NDCG@10']:.6g}"
        assert records["register"]["outputs"]["version"] == versions[0].version
        row["outcome"] = (f"one version ({versions[0].version}) for run {night['run_id']}; rerun "
                          f"{'reused it (same model sha256)' if records['register']['outputs']['reused'] else 'replaced ' + str(records['register']['outputs']['replaced'])}"
                          f"; its tags carry the rerun's test full/NDCG@10 {tags['metric.test/full/NDCG_at_10']}")
        row["seconds"] = round(time.monotonic() - start, 1)


def _train_worker_pids(marker: str) -> list[int]:
    """The Ray Train worker processes of our own Ray head (their environment names our temp folder)."""
    out = []
    for pid in sv.pids_matching("RayTrainWorker"):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


MAX_EPOCHS = 6  # training.max_epochs of the cluster config (conftest.py)


def _registered_epoch(storage: Path) -> int | None:
    """The epoch of the latest checkpoint Ray Train has registered for the run (None before the first)."""
    for snapshot in storage.glob("*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
        except (OSError, ValueError):
            continue  # being written
        if latest and latest.get("metrics", {}).get("epoch") is not None:
            return int(latest["metrics"]["epoch"])
    return None


def test_ray_worker_killed(cluster, monkeypatch):
    if "night1" not in STATE:
        pytest.skip("needs the first night's features and its uninterrupted training")
    from unisem.pipeline import stages
    from unisem.pipeline.spec import make_spec

    night = _records(cluster, STATE["night1"]["run_id"])
    reference = night["train"]["outputs"]["best_metrics"]
    featured = {"features_dir": night["features"]["outputs"]["features_dir"]}
    embedded = {"embeddings_dir": night["embed"]["outputs"]["embeddings_dir"]}
    for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "UNISEM_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(k, {"RAY_ADDRESS": cluster.ray_dashboard, "RAY_AUTH_TOKEN": cluster.ray_token,
                               "UNISEM_HOME": str(cluster.home), "MLFLOW_TRACKING_URI": cluster.mlflow_uri}[k])
    spec = make_spec("drill-ray-worker-killed", str(cluster.config), (), cluster.home)
    storage = spec.layout().training / "ray"
    with drill("ray_worker_killed", COMMAND) as row:
        start = time.monotonic()
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(
            result=_catch(lambda: stages.train(spec, featured, embedded))), daemon=True)
        thread.start()
        killed: list[int] = []

        def registered_checkpoint():
            # A checkpoint on disk is not yet one Ray resumes from: the controller takes reports off the worker
            # every couple of seconds, and a worker killed before that restarts from scratch. Ray's own
            # checkpoint-manager snapshot says which checkpoint it has registered.
            epoch = _registered_epoch(storage)
            return epoch is not None and epoch < MAX_EPOCHS and _train_worker_pids(str(cluster.root))

        pids = sv.wait_until("a checkpoint of the drill's training registered by Ray", registered_checkpoint, 900,
                             interval_s=0.5)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        thread.join(timeout=1200)
        assert not thread.is_alive(), "training did not finish after the worker was killed"
        result = outcome["result"]
        assert not isinstance(result, BaseException), result
        record = json.loads((spec.layout().training / "ray_run.json").read_text())
        assert record["resumed_from_epoch"] is not None and record["resumed_from_epoch"] >= 1, record
        for name, value in reference.items():
            assert result["best_metrics"][name] == pytest.approx(value, abs=0.02), name
        row["outcome"] = (f"killed Ray train worker pid {killed} once Ray had registered a checkpoint; "
                          f"resumed from epoch {record['resumed_from_epoch']}; best valid NDCG@10 "
                          f"{result['best_metrics']['NDCG@10']:.4f} vs uninterrupted {reference['NDCG@10']:.4f}")
        row["seconds"] = round(time.monotonic() - start, 1)


def _catch(fn):
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc


# The drill's spark-submit bound, set in the config file for the first attempt only (the rerun after the
# worker returns runs with the normal bound): above the time the validate app needs to reach the master.
SPARK_DRILL_TIMEOUT_S = 150.0


def _stop_worker_mid_validate(cluster) -> None:
    def validate_running():
        return any(a["name"] == "unisem-validate" and a.get("state") == "RUNNING"
                   for a in sv.http_json(f"{cluster.spark_ui}/json")["activeapps"])

    sv.wait_until("the validate app on the Spark master", validate_running, 900, interval_s=1)
    time.sleep(3)  # let its executor start working
    cluster.services["spark-worker"].stop()


def test_mlflow_outage_at_register(cluster):
    """The tracking server is down when the first night's register runs again: the task fails fast naming
    the server, nothing is half-registered, and once the server is back a clear-and-rerun leaves exactly
    one version for the night."""
    if "night1" not in STATE:
        pytest.skip("needs the first night")
    night = STATE["night1"]
    with drill("mlflow_outage_at_register", COMMAND) as row:
        before = _versions(cluster, night["run_id"])
        exp = _mlflow(cluster).get_experiment_by_name("unisem")
        runs_before = _mlflow(cluster).search_runs([exp.experiment_id])
        cluster.services["mlflow"].stop()
        try:
            cluster.clear(night["dag_run_id"], ["register"])
            run = cluster.wait_run(night["dag_run_id"])
            states = cluster.task_states(night["dag_run_id"])
        finally:
            cluster.start_mlflow()
        assert run["state"] == "failed" and states["register"] == "failed", states
        reg_seconds = _seconds(_ti(cluster, night["dag_run_id"], "register"))
        assert reg_seconds < 180, reg_seconds
        error = _records(cluster, night["run_id"])["register"]["error"]
        assert cluster.mlflow_uri in error and "cannot reach" in error, error
        assert cluster.mlflow_uri in _task_log(cluster, night["dag_run_id"], "register")
        # nothing half-registered: the same versions and runs as before the failed attempt
        assert [v.version for v in _versions(cluster, night["run_id"])] == [v.version for v in before]
        assert len(_mlflow(cluster).search_runs([exp.experiment_id])) == len(runs_before)
        cluster.clear(night["dag_run_id"], ["register"])
        run = cluster.wait_run(night["dag_run_id"])
        assert run["state"] == "success", cluster.task_states(night["dag_run_id"])
        versions = _versions(cluster, night["run_id"])
        assert len(versions) == 1
        row["outcome"] = (f"MLflow server stopped: register failed after {reg_seconds:.0f}s with: "
                          f"{error.splitlines()[0][:200]}; no new version or run; after the server returned, "
                          f"clear-and-rerun of register: exactly one version ({versions[0].version}) for the night")
        row["seconds"] = round(reg_seconds, 1)


def test_spark_worker_lost(cluster):
    """Night 2: the Spark worker dies mid-validate; the task fails at its configured timeout, naming the
    master; the worker returns and a rerun of validate succeeds."""
    run_id = run_id_for(NIGHT_2)
    normal = cluster.config.read_text()
    with drill("spark_worker_lost", COMMAND) as row:
        cluster.config.write_text(normal.replace("orchestration:\n", "orchestration:\n  timeouts:\n"
                                                 f"    spark_submit_s: {SPARK_DRILL_TIMEOUT_S}\n"))
        try:
            dag_run_id = cluster.trigger(NIGHT_2)
            _stop_worker_mid_validate(cluster)
            run = cluster.wait_run(dag_run_id)
        finally:
            cluster.config.write_text(normal)
        assert run["state"] == "failed"
        ti = _ti(cluster, dag_run_id, "validate")
        assert ti["state"] == "failed"
        error = _records(cluster, run_id)["validate"]["error"]
        assert cluster.spark_master in error and f"within {SPARK_DRILL_TIMEOUT_S:g}s" in error, error
        assert cluster.spark_master in _task_log(cluster, dag_run_id, "validate")
        failed_after = _seconds(ti)
        # the worker returns; validate of the same night runs again, with the normal bound
        cluster.start_spark_worker()
        cluster.clear(dag_run_id, ["validate"], downstream=False)
        # only validate was cleared (not its downstream), so wait for that task rather than the whole run
        ti = sv.wait_until("validate rerun", lambda: (lambda t: t if t["state"] in ("success", "failed") else None)(
            _ti(cluster, dag_run_id, "validate")), 1500, cluster.services["scheduler"].log, interval_s=5)
        assert ti["state"] == "success", _records(cluster, run_id).get("validate")
        verdict = _records(cluster, run_id)["validate"]["outputs"]["verdict"]
        row["outcome"] = (f"worker stopped mid-validate: the task failed after {failed_after:.0f}s "
                          f"(timeout {SPARK_DRILL_TIMEOUT_S:g}s) with: {error.splitlines()[0][:200]}; "
                          f"rerun after the worker returned: validate succeeded (verdict {verdict}) in "
                          f"{_seconds(ti):.0f}s")
        row["seconds"] = round(failed_after, 1)
