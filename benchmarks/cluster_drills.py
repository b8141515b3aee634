"""The cluster drills: the nightly DAG on real services on loopback and four faults, with what each showed.

    python benchmarks/cluster_drills.py

Runs the ``cluster`` test suite (``pytest -m cluster tests/cluster``: Spark standalone master + worker, a Ray
head with the Jobs API and token authentication, an MLflow server, PostgreSQL + the Airflow api-server,
scheduler and dag-processor, all started by the tests) with ``UNISEM_DRILL_RESULTS`` set, so that each drill
appends its row, and writes them to benchmarks/results/cluster_drills.json as a list of rows
``{drill, outcome, seconds, passed, command}`` plus the suite's wall and CPU seconds and the load average
(the machine is shared; wall times are upper bounds). Exit code: pytest's.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "cluster_drills.json"
DRILLS = ("nightly_on_cluster", "rerun_same_date", "ray_worker_killed", "spark_worker_lost",
          "mlflow_outage_at_register")


def main() -> int:
    command = [sys.executable, "-m", "pytest", "-m", "cluster", "tests/cluster", "-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.jsonl"
        env = {**os.environ, "UNISEM_DRILL_RESULTS": str(rows_file), "HF_HUB_OFFLINE": "1",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        load_before = os.getloadavg()
        start = time.monotonic()
        rc = subprocess.call(command, cwd=REPO, env=env)
        wall = time.monotonic() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    shown = "python benchmarks/cluster_drills.py  # runs: " + shlex.join(["pytest", *command[3:]])
    seen = {r["drill"] for r in rows}
    for name in DRILLS:
        if name not in seen:
            rows.append({"drill": name, "outcome": "did not run (see the pytest output)", "seconds": None,
                         "passed": False, "command": shown})
    for row in rows:
        row.update({"command": shown, "suite_wall_seconds": round(wall, 1),
                    "suite_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()], "pytest_exit_code": rc})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(f"{row['drill']:28s} {'passed' if row['passed'] else 'FAILED':7s} {row['seconds']}s  {row['outcome']}")
    print(f"wrote {RESULTS} (suite {wall:.0f}s wall)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
