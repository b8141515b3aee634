"""An Airflow installation under ``UNISEM_HOME`` with nothing to start by hand, and one DAG run through it.

Airflow is configured entirely through environment variables (no edited airflow.cfg): SQLite metadata under
``<home>/airflow``, the repository's ``dags/`` folder, no example DAGs. ``airflow db migrate`` runs once per
Airflow version (a marker file remembers it). A run is ``airflow dags test <dag> <logical date>``: the real
scheduler loop and task runner in one process, without a scheduler or webserver to keep alive. Its full log
goes to a file, line by line (Great Expectations' registration chatter left out); the terminal gets one line
per task and the stages' progress lines (epochs, gate reasons, the promotion decision).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

from unisem.progress import progress_text

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"

_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\w+)")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\w+)")
_NEW_STATE = re.compile(r"new_state=(\w+)")
_RUN_DONE = re.compile(r"DagRun Finished: .*?state=(\w+)")
# Great Expectations logs one of these per expectation class it registers, at import: hundreds of lines.
_NOISE = re.compile(r"Skipping registering function")


class AirflowRun(NamedTuple):
    returncode: int
    dag_state: str | None  # "success" / "failed", from the log; None if the run never finished
    log_path: Path
    seconds: float


def airflow_home(home: Path) -> Path:
    return home / "airflow"


def airflow_env(home: Path, config_path: str | Path | None = None, dags_folder: Path = DAGS_FOLDER,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that points Airflow (and the unisem tasks it runs) at ``home``."""
    af = airflow_home(home)
    env = dict(os.environ if base is None else base)
    env.update({
        "AIRFLOW_HOME": str(af),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # dags test runs every task in this one process; the stage libraries keep their own progress quiet.
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "UNISEM_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    if config_path:
        env["UNISEM_CONFIG"] = str(Path(config_path).resolve())
    else:
        env.pop("UNISEM_CONFIG", None)
    return env


def airflow_command(*args: str) -> list[str]:
    """``airflow`` from this interpreter's environment, so the tasks import the same unisem."""
    return [sys.executable, "-m", "airflow", *args]


def ensure_db(home: Path, env: Mapping[str, str]) -> bool:
    """Create or upgrade the SQLite metadata database once; True when it ran the migration."""
    import airflow

    af = airflow_home(home)
    marker = af / f".migrated-{airflow.__version__}"
    if marker.exists() and (af / "airflow.db").exists():
        return False
    af.mkdir(parents=True, exist_ok=True)
    log = af / "db-migrate.log"
    with open(log, "w") as fh:
        proc = subprocess.run(airflow_command("db", "migrate"), env=dict(env), stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"airflow db migrate failed (exit {proc.returncode}); log {log}:\n{tail}")
    marker.write_text("ok\n")
    return True


def dags_test(dag_id: str, logical_date: str, env: Mapping[str, str], log_path: Path,
              conf: Mapping[str, object] | None = None,
              progress: Callable[[str], None] | None = None) -> AirflowRun:
    """``airflow dags test``: stream the log to ``log_path`` and report each task start to ``progress``."""
    cmd = airflow_command("dags", "test", dag_id, logical_date)
    if conf:
        cmd += ["--conf", json.dumps(dict(conf))]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    state = None
    with open(log_path, "w", buffering=1) as log:  # line-buffered: `tail -f` follows the run
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, errors="replace")
        assert proc.stdout is not None
        task_state, task_start = "unknown", start
        for line in proc.stdout:
            if _NOISE.search(line):
                continue
            log.write(line)
            now = time.monotonic()
            if progress and (text := progress_text(line)):
                progress(f"[{now - start:5.0f}s]   {text}")
            elif m := _TASK_START.search(line):
                task_state, task_start = "unknown", now
                if progress:
                    progress(f"[{now - start:5.0f}s] {m.group(1)} ...")
            elif m := _NEW_STATE.search(line):
                task_state = m.group(1)
            elif (m := _TASK_END.search(line)) and progress:
                progress(f"[{now - start:5.0f}s] {m.group(1)}: {task_state} ({now - task_start:.0f}s)")
            if m := _RUN_DONE.search(line):
                state = m.group(1)
        rc = proc.wait()
    return AirflowRun(rc, state, log_path, time.monotonic() - start)


def standalone_hint(home: Path, config_path: str | Path | None = None) -> str:
    """The command that opens this Airflow home in the web UI."""
    env = airflow_env(home, config_path, base={})
    keys = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "UNISEM_HOME", "UNISEM_CONFIG")
    return " ".join(f"{k}={env[k]}" for k in keys if k in env) + " airflow standalone"
