"""The cluster of the ``cluster`` tests, started once per session on loopback and stopped by PID:
a Spark standalone master + worker, a Ray head with its dashboard (Jobs API) and token authentication,
an MLflow tracking server (SQLite backend, proxied artifact store), PostgreSQL, and Airflow (api-server,
scheduler with the LocalExecutor, dag-processor) on that PostgreSQL with the repository's dags/.

The Airflow tasks get the service addresses from their environment (SPARK_MASTER, RAY_ADDRESS,
MLFLOW_TRACKING_URI), as a deployment gives them; the run conf carries only the demo profile's overrides.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import services as sv

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.cluster

# The demo profile trimmed for the cluster tests: a small catalog and a short training, so the nightly DAG
# on the cluster takes minutes on a busy 2-core machine; retries 0 so a failure fails the run at once.
CLUSTER_TEST_CONFIG = """\
data:
  demo:
    items: 300
    users: 300
training:
  max_epochs: 6
  patience: 3
  batch_size: 64
  lr: 0.002
  show_progress: false
  num_workers: 1
  max_failures: 2
model:
  dropout: 0.2
  num_blocks: 1
quantizer:
  codebook_size: 32
  kmeans_iters: 5
text:
  show_progress: false
orchestration:
  schedule: ''
  retries: 0
"""


@dataclass
class Cluster:
    root: Path
    home: Path
    config: Path
    env: dict[str, str]
    spark_master: str
    spark_ui: str
    ray_dashboard: str
    ray_token: str
    mlflow_uri: str
    airflow_url: str
    services: dict[str, sv.Service] = field(default_factory=dict)
    spark_worker_cmd: list[str] = field(default_factory=list)
    spark_worker_env: dict[str, str] = field(default_factory=dict)
    mlflow_cmd: list[str] = field(default_factory=list)

    # -- Airflow REST API (JWT from /auth/token; every admin on loopback)
    _token: str = ""

    def api(self, path: str, method: str = "GET", body: object = None, timeout_s: float = 30.0):
        if not self._token:
            self._token = sv.http_json(f"{self.airflow_url}/auth/token", timeout_s=timeout_s)["access_token"]
        return sv.http_json(f"{self.airflow_url}{path}", method=method, body=body, timeout_s=timeout_s,
                            headers={"Authorization": f"Bearer {self._token}"})

    def trigger(self, logical_date: str, conf: dict | None = None) -> str:
        run = self.api("/api/v2/dags/unisem_nightly/dagRuns", "POST",
                       {"logical_date": logical_date, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_run_id: str, timeout_s: float = 1500.0) -> dict:
        def done():
            run = self.api(f"/api/v2/dags/unisem_nightly/dagRuns/{dag_run_id}")
            return run if run["state"] in ("success", "failed") else None

        return sv.wait_until(f"DAG run {dag_run_id} at {self.airflow_url}", done, timeout_s,
                             self.services["scheduler"].log, interval_s=5)

    def task_states(self, dag_run_id: str) -> dict[str, str]:
        tis = self.api(f"/api/v2/dags/unisem_nightly/dagRuns/{dag_run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def clear(self, dag_run_id: str, task_ids: list[str] | None = None, downstream: bool = True) -> None:
        body = {"dry_run": False, "only_failed": task_ids is None, "reset_dag_runs": True,
                "dag_run_id": dag_run_id}
        if task_ids:
            body.update({"task_ids": task_ids, "include_downstream": downstream})
        self.api("/api/v2/dags/unisem_nightly/clearTaskInstances", "POST", body)

    def start_spark_worker(self) -> sv.Service:
        svc = sv.Service("spark-worker", self.spark_worker_cmd, self.root / "spark" / "worker.log",
                         self.spark_worker_env)
        self.services["spark-worker"] = svc

        def registered():
            return len([w for w in sv.http_json(f"{self.spark_ui}/json")["workers"] if w["state"] == "ALIVE"])

        sv.wait_until("Spark worker", registered, 180, svc.log, proc=svc)
        return svc

    def start_mlflow(self) -> sv.Service:
        svc = sv.Service("mlflow", self.mlflow_cmd, self.root / "mlflow" / "server.log", self.env)
        self.services["mlflow"] = svc
        sv.wait_until("MLflow server", lambda: urllib_ok(f"{self.mlflow_uri}/health"), 240, svc.log, proc=svc)
        return svc


def urllib_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status == 200


def _airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


@pytest.fixture(scope="session")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="unisem-cluster-"))
    os.chmod(root, 0o755)
    started: list[sv.Service] = []
    c = None
    try:
        c = _start(root, started)
        yield c
    finally:
        for svc in reversed(list(c.services.values()) if c is not None else started):
            svc.stop()
        sv.kill_pids_using(str(root))
        if os.environ.get("UNISEM_KEEP_CLUSTER_LOGS"):
            print(f"cluster test logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _start(root: Path, started: list) -> Cluster:
    home = root / "home"
    home.mkdir()
    config = root / "cluster-test.yaml"
    config.write_text(CLUSTER_TEST_CONFIG)
    env = sv.base_env()
    services: dict[str, sv.Service] = {}

    def keep(svc: sv.Service) -> sv.Service:
        services[svc.name] = svc
        started.append(svc)
        return svc

    # PostgreSQL for Airflow's metadata
    pg, pg_port = sv.start_postgres(root / "pg")
    keep(pg)

    # Spark standalone master + worker
    spark_port, spark_ui_port, worker_ui_port = sv.free_port(), sv.free_port(), sv.free_port()
    spark_env = {**env, "SPARK_LOG_DIR": str(root / "spark"), "SPARK_WORKER_DIR": str(root / "spark" / "work"),
                 "SPARK_NO_DAEMONIZE": "1"}
    spark_class = str(sv.VENV_BIN / "spark-class")
    keep(sv.Service("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                     "--port", str(spark_port), "--webui-port", str(spark_ui_port)],
                    root / "spark" / "master.log", spark_env))
    spark_ui = f"http://127.0.0.1:{spark_ui_port}"
    sv.wait_until("Spark master", lambda: sv.http_json(f"{spark_ui}/json")["status"] == "ALIVE", 180,
                  services["spark-master"].log, proc=services["spark-master"])

    # Ray head with the dashboard (Jobs API), token authentication, its own temp dir, on loopback only
    ray_port, dash_port = sv.free_port(), sv.free_port()
    ray_token = secrets.token_hex(16)
    ray_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": ray_token, "RAY_USAGE_STATS_ENABLED": "0",
               "UNISEM_CONFIG": str(config),
               # --node-ip-address=127.0.0.1 alone is replaced by the machine's interface address (Ray resolves
               # "localhost" to a remotely reachable IP unless it is told this is not a multi-node cluster)
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    keep(sv.Service("ray-head", [str(sv.VENV_BIN / "ray"), "start", "--head", "--block",
                                 "--node-ip-address=127.0.0.1", f"--port={ray_port}",
                                 "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
                                 "--include-dashboard=true", f"--temp-dir={root / 'ray'}", "--num-cpus=2",
                                 "--num-gpus=0", "--object-store-memory=200000000", "--disable-usage-stats"],
                    root / "ray-head.log", ray_env))

    # MLflow tracking server, SQLite backend store, artifacts proxied by the server
    mlflow_port = sv.free_port()
    mlflow_cmd = [str(sv.VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                  "--backend-store-uri", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
                  "--artifacts-destination", str(root / "mlflow" / "artifacts"), "--workers", "1"]
    (root / "mlflow").mkdir()
    mlflow_svc = keep(sv.Service("mlflow", mlflow_cmd, root / "mlflow" / "server.log", env))

    dashboard = f"http://127.0.0.1:{dash_port}"
    mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
    spark_master = f"spark://127.0.0.1:{spark_port}"

    # Airflow on PostgreSQL: api-server, scheduler (LocalExecutor), dag-processor
    api_port = sv.free_port()
    airflow_url = f"http://127.0.0.1:{api_port}"
    af_home = root / "airflow"
    af_home.mkdir()
    af_env = {
        **env,
        "AIRFLOW_HOME": str(af_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/airflow",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
        "AIRFLOW__API__BASE_URL": airflow_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # a busy 2-core machine answers slowly: a task's first call to the execution API must not give up
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(af_home / "logs"),
        # what the unisem tasks read: the deployment's addresses and the test profile
        "UNISEM_HOME": str(home),
        "UNISEM_CONFIG": str(config),
        "SPARK_MASTER": spark_master,
        "RAY_ADDRESS": dashboard,
        "RAY_AUTH_TOKEN": ray_token,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "UNISEM_SPARK_SUBMIT_ARGS": "--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 "
                                    "--conf spark.executor.memory=1g --conf spark.cores.max=1",
    }
    migrate = subprocess.run(_airflow("db", "migrate"), env=af_env, capture_output=True, text=True, timeout=900)
    if migrate.returncode != 0:
        raise sv.ServiceError(f"airflow db migrate on PostgreSQL failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}")
    keep(sv.Service("api-server", _airflow("api-server", "--host", "127.0.0.1", "--port", str(api_port)),
                    af_home / "api-server.log", af_env))
    keep(sv.Service("dag-processor", _airflow("dag-processor"), af_home / "dag-processor.log", af_env))
    keep(sv.Service("scheduler", _airflow("scheduler"), af_home / "scheduler.log", af_env))

    worker_cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", spark_master, "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "2g", "--webui-port", str(worker_ui_port),
                  "--work-dir", str(root / "spark" / "work")]
    c = Cluster(root, home, config, af_env, spark_master, spark_ui, dashboard, ray_token, mlflow_uri,
                airflow_url, services, worker_cmd, spark_env, mlflow_cmd)
    c.start_spark_worker()
    started.append(services["spark-worker"])

    sv.wait_until("Ray dashboard (Jobs API)", lambda: sv.http_json(
        f"{dashboard}/api/version", headers={"Authorization": f"Bearer {ray_token}"}), 300,
        services["ray-head"].log, proc=services["ray-head"])
    sv.wait_until("MLflow server", lambda: urllib_ok(f"{mlflow_uri}/health"), 300, mlflow_svc.log, proc=mlflow_svc)
    sv.wait_until("Airflow api-server", lambda: urllib_ok(f"{airflow_url}/api/v2/monitor/health"), 600,
                  services["api-server"].log, proc=services["api-server"])
    sv.wait_until("unisem_nightly parsed by the dag-processor", lambda: c.api("/api/v2/dags/unisem_nightly"), 600,
                  services["dag-processor"].log, interval_s=5, proc=services["dag-processor"])
    return c
