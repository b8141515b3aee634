"""The cluster deployment files are well-formed, complete and agree with what the pipeline expects.

Docker is not available where the tests run, so the images are not built here; these checks catch the
mistakes that would only show on the cluster: a file the compose file names that does not exist, a service
address the DAG or the cluster config spells differently, a secret written into a file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from unisem.config import load_config

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
CLUSTER_CONFIG = REPO / "configs" / "cluster.yaml"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def test_every_required_service_is_there(compose):
    required = {"postgres", "mlflow", *AIRFLOW_SERVICES, "airflow-init", "spark-master", "spark-worker",
                "ray-head", "ray-gpu-worker"}
    assert required <= set(compose["services"])


def test_every_file_the_compose_file_names_exists(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} not declared"


def test_every_file_the_dockerfiles_copy_exists():
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                sources = [p for p in line.split()[1:-1] if not p.startswith("--")]
                for src in sources:
                    assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} (from the repository root) missing"
        assert (DOCKER / f"{dockerfile.name}.dockerignore").is_file()


def test_the_images_install_the_pinned_versions_they_need():
    """Both images install requirements.txt, which pins the cluster extras: the Ray Jobs API (ray[default])
    and Airflow/MLflow on PostgreSQL (psycopg2 and Airflow 3's async driver asyncpg)."""
    text = (DOCKER / "pipeline.Dockerfile").read_text()
    assert "default-jre-headless" in text
    for dockerfile in ("pipeline.Dockerfile", "train.Dockerfile"):
        assert "pip install -r requirements.txt" in (DOCKER / dockerfile).read_text(), dockerfile
    pins = (REPO / "requirements.txt").read_text()
    for pin in (r"ray\[default,train\]", "psycopg2-binary", "asyncpg", "aiohttp-cors"):
        assert re.search(rf"^{pin}==[\d.]+$", pins, re.M), pin
    assert "cu" in re.search(r"TORCH_INDEX_URL=(\S+)", (DOCKER / "train.Dockerfile").read_text()).group(1)


def test_service_addresses_agree_with_the_cluster_config_and_the_dag(compose):
    cfg = load_config(CLUSTER_CONFIG)
    services = compose["services"]
    spark = re.fullmatch(r"spark://([\w-]+):(\d+)", cfg.orchestration.spark_master)
    ray = re.fullmatch(r"http://([\w-]+):(\d+)", cfg.orchestration.ray_address)
    mlflow = re.fullmatch(r"http://([\w-]+):(\d+)", cfg.registry.tracking_uri)
    assert spark and ray and mlflow
    assert spark.group(1) in services and ray.group(1) in services and mlflow.group(1) in services
    assert f"--port {spark.group(2)}" in " ".join(_command(services[spark.group(1)]))
    assert f"--dashboard-port={ray.group(2)}" in _command(services[ray.group(1)])
    mlflow_cmd = _command(services[mlflow.group(1)])
    assert mlflow_cmd[mlflow_cmd.index("--port") + 1] == mlflow.group(2)
    assert f"spark://{spark.group(1)}:{spark.group(2)}" in _command(services["spark-worker"])
    assert any(c.startswith(f"--address={ray.group(1)}:") for c in _command(services["ray-gpu-worker"]))
    # The environment the DAG reads its param defaults from, in every container that runs unisem code.
    for name in (*AIRFLOW_SERVICES, "spark-master", "spark-worker", "ray-head", "ray-gpu-worker"):
        env = _env(services[name])
        assert env["SPARK_MASTER"] == cfg.orchestration.spark_master, name
        if name in AIRFLOW_SERVICES:
            assert env["RAY_ADDRESS"] == cfg.orchestration.ray_address, name
        else:  # Ray sets it for job drivers on the cluster; a dashboard URL there would misdirect ray.init
            assert "RAY_ADDRESS" not in env, name
        assert env["MLFLOW_TRACKING_URI"] == cfg.registry.tracking_uri, name
        assert env["UNISEM_CONFIG"] == "/opt/unisem/configs/cluster.yaml", name
        assert env["UNISEM_HOME"] == "/data/unisem", name
        assert "unisem-home:/data/unisem" in services[name]["volumes"], name
    params_text = (REPO / "unisem" / "pipeline" / "params.py").read_text()  # the DAG params' defaults
    for var in ("SPARK_MASTER", "RAY_ADDRESS", "MLFLOW_TRACKING_URI", "UNISEM_CONFIG"):
        assert f'env("{var}"' in params_text
    for name in AIRFLOW_SERVICES:
        env = _env(services[name])
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/unisem/dags"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_the_gpu_worker_reserves_gpus(compose):
    devices = compose["services"]["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--num-gpus=0" in _command(compose["services"]["ray-head"])


def test_no_secret_is_written_into_a_file(compose):
    """Secrets come from the environment: the compose file only interpolates them, .env.example leaves them empty."""
    text = COMPOSE.read_text()
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert re.search(r"\$\{" + var + r":\?", text), f"{var} must be required from the environment"
    example = dict(
        line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for var in ("POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert example[var] == "", f".env.example must leave {var} empty"
    # Every ${VAR} the compose file uses is documented in .env.example.
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used <= set(example), f"undocumented variables: {sorted(used - set(example))}"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_postgres_creates_both_databases(compose):
    script = (DOCKER / "postgres" / "init-databases.sh").read_text()
    assert "AIRFLOW_DB" in script and "MLFLOW_DB" in script
    env = _env(compose["services"]["postgres"])
    assert {"AIRFLOW_DB", "MLFLOW_DB"} <= set(env)
