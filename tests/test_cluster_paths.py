"""The cluster paths' own logic, without a cluster: the one precedence rule for service addresses, the run
conf of ``unisem run``, bounded and streamed subprocesses, fast failures naming a service that does not
answer, and the rule that keeps one registered version per pipeline run id (on a real SQLite MLflow store).

The same paths against real services (Spark standalone, a Ray head, an MLflow server, Airflow on PostgreSQL)
are tested in tests/cluster/ (marker ``cluster``).
"""
from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from unisem.config import load_config
from unisem.config.services import resolve
from unisem.pipeline import cluster

ADDRESS_ENV = ("SPARK_MASTER", "RAY_ADDRESS", "MLFLOW_TRACKING_URI")


@pytest.fixture
def clean_env(monkeypatch):
    for var in ADDRESS_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_explicit_beats_environment_beats_config_file_beats_default(clean_env, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("orchestration:\n  spark_master: spark://file:7077\nregistry:\n  tracking_uri: http://file:5000\n")
    assert load_config().orchestration.spark_master == "local[*]"  # embedded default
    assert load_config(cfg_file).orchestration.spark_master == "spark://file:7077"
    clean_env.setenv("SPARK_MASTER", "spark://env:7077")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    clean_env.setenv("RAY_ADDRESS", "http://env:8265")
    cfg = load_config(cfg_file)
    assert (cfg.orchestration.spark_master, cfg.registry.tracking_uri, cfg.orchestration.ray_address) == (
        "spark://env:7077", "http://env:5000", "http://env:8265")
    cfg = load_config(cfg_file, ["orchestration.spark_master=spark://flag:7077", "registry.tracking_uri=http://flag:1"])
    assert cfg.orchestration.spark_master == "spark://flag:7077" and cfg.registry.tracking_uri == "http://flag:1"
    # an empty flag or param is "not given": the environment stands
    cfg = load_config(cfg_file, ["orchestration.spark_master=", "orchestration.ray_address= "])
    assert cfg.orchestration.spark_master == "spark://env:7077" and cfg.orchestration.ray_address == "http://env:8265"
    assert resolve("", "SPARK_MASTER", "spark://file:7077") == "spark://env:7077"
    assert resolve(" x ", "SPARK_MASTER", "y") == "x"
    assert resolve(None, "NOT_SET_ANYWHERE_42", "", "local[*]") == "local[*]"


def test_dag_params_become_explicit_values_above_the_environment(clean_env):
    from unisem.pipeline.spec import spec_from_params

    clean_env.setenv("SPARK_MASTER", "spark://env:7077")
    spec = spec_from_params({"spark_master": "spark://param:7077", "ray_address": "", "mlflow_uri": ""},
                            "2026-01-01T00:00:00+00:00")
    cfg = spec.config()
    assert cfg.orchestration.spark_master == "spark://param:7077" and cfg.orchestration.ray_address == ""
    empty = spec_from_params({"spark_master": ""}, "2026-01-01T00:00:00+00:00").config()
    assert empty.orchestration.spark_master == "spark://env:7077"


def test_unisem_run_sends_only_given_values_in_the_run_conf():
    from unisem.cli.pipeline import run_conf, service_overrides

    args = argparse.Namespace(catalog="", interactions="", spark_master="", ray_address="http://r:8265",
                              mlflow_uri="  ", overrides=None, dag="unisem_nightly")
    assert run_conf(args, "/c.yaml") == {"config_file": "/c.yaml", "ray_address": "http://r:8265"}
    assert service_overrides(args) == ["orchestration.ray_address=http://r:8265"]
    args.dag, args.overrides = "unisem_quality_report", ["training.lr=0.1"]
    assert run_conf(args, "") == {"overrides": ["training.lr=0.1"]}


def test_a_dashboard_url_never_reaches_ray_init(clean_env):
    from unisem.train.ray_trainer import ray_address

    clean_env.setenv("RAY_ADDRESS", "http://head:8265")
    with pytest.raises(ValueError, match="dashboard URL"):
        ray_address(load_config())
    clean_env.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # what Ray sets in a job's driver
    assert ray_address(load_config()) == "127.0.0.1:6379"
    assert cluster.ray_mode("127.0.0.1:6379") == "library" and cluster.ray_mode("http://head:8265") == "ray-job"


def test_subprocess_output_is_streamed_into_logging_and_the_side_file(tmp_path, caplog):
    code = "import sys, time\nfor i in range(3):\n    print('line', i, flush=True)\nprint('err', file=sys.stderr)"
    with caplog.at_level(logging.INFO, logger="unisem.cluster"):
        assert cluster.run_logged([sys.executable, "-c", code], tmp_path / "x.log", prefix="[job] ") == 0
    assert [r.getMessage() for r in caplog.records if r.name == "unisem.cluster"] == [
        "[job] line 0", "[job] line 1", "[job] line 2", "[job] err"]
    assert (tmp_path / "x.log").read_text().splitlines() == ["line 0", "line 1", "line 2", "err"]


def test_a_subprocess_past_its_timeout_is_killed_with_its_children_and_named(tmp_path):
    pid_file = tmp_path / "child.pid"
    # the child of the child would keep a pipe open (and a JVM running) if only the leader were killed
    code = ("import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "print('started', flush=True)\ntime.sleep(600)")
    with pytest.raises(cluster.ClusterJobError, match=r"(?s)Spark job validate.py on master spark://m:1.*within 3s.*started"):
        cluster.run_logged([sys.executable, "-c", code], tmp_path / "t.log", timeout_s=3,
                           service="Spark job validate.py on master spark://m:1")
    child = int(pid_file.read_text())
    import time

    for _ in range(100):  # SIGKILL is delivered at once; the kernel may take a moment to reap
        if not Path(f"/proc/{child}").exists() or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the child {child} of the timed-out command is still running")


def test_a_spark_master_that_does_not_answer_fails_fast_naming_it(tmp_path):
    port = _closed_port()
    with pytest.raises(cluster.ServiceUnavailable, match=f"Spark master at spark://127.0.0.1:{port} is not reachable"):
        cluster.spark_submit(f"spark://127.0.0.1:{port}", "validate.py", [], tmp_path / "v.log", connect_timeout_s=2)


def test_a_ray_dashboard_that_does_not_answer_fails_fast_naming_it(tmp_path):
    port = _closed_port()
    with pytest.raises(cluster.ClusterJobError, match=f"Ray dashboard at http://127.0.0.1:{port} is not reachable"):
        cluster.submit_ray_job(f"http://127.0.0.1:{port}", ["true"], "t", connect_timeout_s=2)


def test_ray_token_comes_from_config_else_environment(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert cluster.ray_auth_headers("") == {}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "envtok")
    assert cluster.ray_auth_headers("") == {"Authorization": "Bearer envtok"}
    assert cluster.ray_auth_headers("cfgtok") == {"Authorization": "Bearer cfgtok"}


def test_ray_job_log_lines_are_taken_once_and_whole():
    lines, seen = cluster._new_lines("a\nb\npart", 0)
    assert lines == ["a", "b"] and seen == 4
    lines, seen = cluster._new_lines("a\nb\npartial\nnext", seen)
    assert lines == ["partial"] and seen == 12


def test_mlflow_client_timeouts_come_from_the_config(clean_env):
    import os

    from unisem.registry.tracking import apply_http_settings

    apply_http_settings(load_config(None, ["orchestration.timeouts.mlflow_request_s=7",
                                           "orchestration.timeouts.mlflow_max_retries=1"]))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7" and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"


def test_an_unreachable_tracking_server_is_an_error_never_not_registered(clean_env, tmp_path):
    from unisem.registry.registration import find_registered
    from unisem.registry.tracking import TrackingUnavailable

    uri = f"http://127.0.0.1:{_closed_port()}"
    cfg = load_config(None, [f"registry.tracking_uri={uri}", "orchestration.timeouts.service_connect_s=2"])
    with pytest.raises(TrackingUnavailable, match=f"cannot reach the MLflow tracking server at {uri}"):
        find_registered(cfg, "2026-01-01T00-00-00")


@pytest.mark.slow
def test_one_registered_version_per_run_id_and_it_is_the_latest_model(clean_env, tmp_path):
    """First registration: a new version. A rerun with different model bytes: registered, the run id's
    earlier version deleted. A rerun with the same bytes: the version is reused. Real SQLite MLflow store."""
    from safetensors.numpy import save_file

    from synthetic_sequences import TINY_MODEL, chain_dataset
    from unisem.data.dataset import write_features
    from unisem.pipeline import stages
    from unisem.pipeline.spec import make_spec
    from unisem.registry.tracking import client
    from unisem.train import fit

    home = tmp_path / "home"
    clean_env.setenv("UNISEM_HOME", str(home))
    overrides = [*TINY_MODEL, "evaluation.ks=[10]", "training.max_epochs=1"]
    spec = make_spec("2026-01-01T00-00-00", None, overrides, home)
    layout = spec.layout()
    data, text = chain_dataset(items=40, users=120, seed=0)
    write_features(data, layout.features)
    layout.embeddings.mkdir(parents=True)
    save_file({"embeddings": text}, str(layout.embeddings / "item_embeddings.safetensors"))
    layout.quality.mkdir(parents=True)
    (layout.quality / "verdict.json").write_text(json.dumps({"verdict": "pass"}))
    layout.evaluation.mkdir(parents=True)
    metrics = layout.evaluation / "metrics.json"
    metrics.write_text(json.dumps({"split": "test", "metrics": {"full": {"NDCG@10": 0.5}}}))
    cfg = spec.config()
    models = {}
    for seed in (1, 2):
        from dataclasses import replace

        seeded = replace(cfg, training=replace(cfg.training, seed=seed))
        result = fit(seeded, data, text, tmp_path / f"train{seed}")
        history = tmp_path / f"history{seed}.json"
        history.write_text(json.dumps(result.history))
        models[seed] = {"model_dir": str(result.model_dir), "best_epoch": result.best_epoch,
                        "best_metrics": result.best_metrics, "history_path": str(history),
                        "features_dir": str(layout.features), "embeddings_dir": str(layout.embeddings),
                        "verdict_path": str(layout.quality / "verdict.json")}

    evaluated = {"metrics_path": str(metrics), "evaluation_dir": str(layout.evaluation)}
    first = stages.register(spec, models[1], evaluated)
    assert first["reused"] is False and first["replaced"] == []
    second = stages.register(spec, models[2], evaluated)
    assert second["version"] != first["version"] and second["replaced"] == [first["version"]]
    again = stages.register(spec, models[2], evaluated)
    assert again["version"] == second["version"] and again["reused"] is True
    from unisem.registry.registration import find_registered

    found = find_registered(cfg, spec.run_id)
    assert [f["version"] for f in found] == [second["version"]]
    versions = client(cfg).search_model_versions("name='unisem'")
    assert [str(v.version) for v in versions] == [second["version"]]


class _AgentStartingClient:
    """Stands in for Ray's JobSubmissionClient (our retry logic is under test; the cluster suite submits
    to a real head): the first ``refusals`` submissions get the answer of a head whose job agent is starting."""

    submissions: list[str] = []
    refusals = 0

    def __init__(self, address, headers=None):
        pass

    def submit_job(self, entrypoint, submission_id, runtime_env):
        type(self).submissions.append(submission_id)
        if len(type(self).submissions) <= type(self).refusals:
            raise RuntimeError(f"Request failed with status code 500: {cluster.NO_AGENT}, please try again later.")

    def get_job_status(self, submission_id):
        return "SUCCEEDED"

    def get_job_logs(self, submission_id):
        return "done\n"


@pytest.mark.parametrize("refusals, agent_wait_s, submitted", [(2, 30.0, True), (10**6, 0.3, False)])
def test_a_head_whose_job_agent_is_starting_is_retried_within_its_bound(monkeypatch, refusals, agent_wait_s, submitted):
    import ray.job_submission

    _AgentStartingClient.submissions, _AgentStartingClient.refusals = [], refusals
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", _AgentStartingClient)
    monkeypatch.setattr(cluster, "ray_dashboard_check", lambda *a, **k: None)
    call = lambda: cluster.submit_ray_job("http://127.0.0.1:1", ["true"], "t", poll_s=0.05, agent_wait_s=agent_wait_s)  # noqa: E731
    if submitted:
        job_id = call()
        assert _AgentStartingClient.submissions == [job_id] * 3  # the same id again: the job was never created
    else:
        with pytest.raises(cluster.ClusterJobError, match=r"no job agent within 0s"):
            call()
