"""A process that imported Airflow (its root handler at INFO, bound to the stream of the moment) and used
Spark exits without py4j's "--- Logging error ---" traceback (what ended every ``make test`` run)."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import os, sys, tempfile
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp()
real = sys.stderr
captured = open(tempfile.mktemp(), "w")  # as pytest's capture: replaced while Airflow configures logging...
sys.stdout = sys.stderr = captured
from airflow.dag_processing.dagbag import DagBag
from unisem.data.spark import spark_session
spark = spark_session("local[1]", app="exit-probe")
assert spark.range(3).count() == 3
spark.stop()
sys.stdout, sys.stderr = sys.__stdout__, real
captured.close()  # ... and closed before the interpreter shuts down
print("DONE")
"""


@pytest.mark.spark
@pytest.mark.slow
def test_no_py4j_logging_error_at_exit(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    assert "Logging error" not in proc.stderr, proc.stderr[-3000:]
