"""The DAG folder loads in a real Airflow DagBag with no import errors, and wires the expected tasks.

The DagBag is loaded in a subprocess with its own AIRFLOW_HOME, because Airflow reads its configuration once
per process; the subprocess reports the DAG structure as JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "params": {k: dag.params[k] for k in dag.params.keys()},
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "trigger_rule": str(t.trigger_rule.value),
                              "retries": t.retries, "backoff": float(t.retry_exponential_backoff or 0),
                              "retry_delay_s": t.retry_delay.total_seconds(), "operator": type(t).__name__,
                              "outlets": [[a.name, a.uri] for a in t.outlets]}
                  for t in dag.tasks},
        "scheduled_on": [[a.name, a.uri] for a in getattr(dag.timetable, "asset_condition", None).objects]
                        if getattr(dag.timetable, "asset_condition", None) is not None else [],
    }
heavy = ("torch", "pyspark", "ray", "mlflow", "great_expectations", "sentence_transformers", "pandas")
out["heavy_modules"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy})
print("JSON:" + json.dumps(out))
"""


def _load(tmp_path: Path, config: Path | None = None, extra_env: dict | None = None,
          dag_folder: Path = REPO / "dags") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "UNISEM_CONFIG"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "UNISEM_HOME": str(tmp_path / "home")})
    if config is not None:
        env["UNISEM_CONFIG"] = str(config)
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", PROBE, str(dag_folder)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("JSON:"))
    return json.loads(line[len("JSON:"):])


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> dict:
    return _load(tmp_path_factory.mktemp("dagbag"))


def test_dag_folder_loads_without_errors_or_heavy_imports(bag):
    assert bag["errors"] == {}
    assert set(bag["dags"]) == {"unisem_nightly", "unisem_quality_report"}
    # Parsing the DAG files imports none of the stage libraries (the scheduler parses them often).
    assert bag["heavy_modules"] == []


def test_nightly_task_graph(bag):
    dag = bag["dags"]["unisem_nightly"]
    up = {t: v["upstream"] for t, v in dag["tasks"].items()}
    assert up == {
        "validate": [],
        "proceed": ["validate"],
        "features": ["proceed", "validate"],
        "embed": ["features"],
        "train": ["embed", "features"],
        "evaluate": ["features", "train"],
        "register": ["evaluate", "train"],
        "promote": ["embed", "features", "register"],
        "recommend": ["features", "promote"],
        "report": ["recommend"],
        "watcher": ["embed", "evaluate", "features", "promote", "recommend", "register", "report", "train",
                    "validate"],
    }
    tasks = dag["tasks"]
    from unisem.pipeline.records import STAGES

    assert set(tasks) == {*STAGES, "watcher"}  # the task ids are the stage names, spelled once
    assert tasks["proceed"]["operator"] == "_ShortCircuitDecoratedOperator"
    assert tasks["report"]["trigger_rule"] == "all_done" and tasks["report"]["retries"] == 0
    assert tasks["watcher"]["trigger_rule"] == "one_failed"
    assert all(tasks[t]["trigger_rule"] == "all_success" for t in ("features", "embed", "train", "promote", "recommend"))


def test_nightly_schedule_retries_and_params_come_from_the_config(bag, tmp_path):
    dag = bag["dags"]["unisem_nightly"]
    assert dag["schedule"] == "@daily" and dag["catchup"] is False and dag["max_active_runs"] == 1
    assert dag["tasks"]["train"]["retries"] == 2 and dag["tasks"]["train"]["backoff"] == 2.0
    assert dag["tasks"]["train"]["retry_delay_s"] == 300
    assert set(dag["params"]) == {"config_file", "catalog", "interactions", "spark_master", "ray_address",
                                  "mlflow_uri", "overrides"}
    assert dag["params"]["overrides"] == [] and dag["params"]["catalog"] == ""

    config = tmp_path / "c.yaml"
    config.write_text("orchestration:\n  schedule: '0 3 * * *'\n  retries: 4\n  retry_delay_minutes: 1\n")
    custom = _load(tmp_path, config, {"RAY_ADDRESS": "http://ray-head:8265"})["dags"]["unisem_nightly"]
    assert custom["schedule"] == "0 3 * * *"
    assert custom["tasks"]["embed"]["retries"] == 4 and custom["tasks"]["embed"]["retry_delay_s"] == 60
    assert custom["params"]["config_file"] == str(config)
    assert custom["params"]["ray_address"] == "http://ray-head:8265"


def test_quality_report_dag_only_validates_and_publishes(bag):
    dag = bag["dags"]["unisem_quality_report"]
    assert {t: v["upstream"] for t, v in dag["tasks"].items()} == {
        "validate": [], "publish": ["validate"], "watcher": ["publish", "validate"],
    }
    assert dag["tasks"]["publish"]["trigger_rule"] == "all_done"
    assert dag["schedule"] == "None"


def test_quality_dag_takes_a_subset_of_the_shared_run_params(bag):
    from unisem.pipeline.params import run_params
    from unisem.pipeline.spec import PARAM_OVERRIDES

    quality = bag["dags"]["unisem_quality_report"]["params"]
    assert set(quality) == {"config_file", "catalog", "interactions", "spark_master", "overrides"}
    assert set(PARAM_OVERRIDES) <= set(run_params())  # every param the spec maps onto config exists
    with pytest.raises(ValueError, match="unknown DAG params \\['nope'\\]"):
        run_params("catalog", "nope")


DOWNSTREAM = """
from datetime import datetime, timezone
from airflow.sdk import dag, task
from unisem.pipeline.assets import recommendations_asset

@dag(dag_id="load_recommendations", schedule=[recommendations_asset()],
     start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False)
def load_recommendations():
    @task
    def load():
        pass

    load()

load_recommendations()
"""


def test_recommend_publishes_an_asset_a_downstream_dag_is_scheduled_on(bag, tmp_path):
    from unisem.home import published_recommendations_dir

    nightly = bag["dags"]["unisem_nightly"]["tasks"]
    outlets = nightly["recommend"]["outlets"]
    assert [o[0] for o in outlets] == ["unisem_recommendations"]
    assert outlets[0][1].startswith("file://") and outlets[0][1].endswith("/published/recommendations")
    assert all(not t["outlets"] for name, t in nightly.items() if name != "recommend")
    folder = tmp_path / "downstream"
    folder.mkdir()
    (folder / "load_recommendations.py").write_text(DOWNSTREAM)
    env_home = tmp_path / "home"
    down = _load(tmp_path, extra_env={"UNISEM_HOME": str(env_home)}, dag_folder=folder)
    assert down["errors"] == {}
    assert down["dags"]["load_recommendations"]["scheduled_on"] == [
        ["unisem_recommendations", published_recommendations_dir(env_home).as_uri()]]
