"""Where a heavy stage runs: in this process (the library), or on a cluster named by the config.

- Spark: a ``local[...]`` master runs the library in-process; any other master (``spark://``, ``yarn``,
  ``k8s://``) goes through ``spark-submit`` of a ``jobs/`` entry point, so the Spark driver runs with the
  cluster's own settings and jars rather than inside the Airflow worker's Python.
- Ray: an empty address trains in-process (a local Ray instance); a Ray dashboard address
  (``http://head:8265``) submits a Ray Job whose entry point is ``unisem stage train`` for the same run, so
  the training driver runs on the cluster next to its GPU workers.
Both wait for the job and raise with the tail of its log when it fails.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import subprocess
import time
import uuid
from pathlib import Path
from typing import Literal, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO_ROOT / "jobs"

# Ray Jobs end in one of these states.
_RAY_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class ClusterJobError(RuntimeError):
    """A spark-submit or Ray job failed; the message carries the command and the end of its log."""


def spark_mode(master: str) -> Literal["library", "spark-submit"]:
    master = master.strip()
    return "library" if (not master or master.startswith("local")) else "spark-submit"


def ray_mode(address: str) -> Literal["library", "ray-job"]:
    address = address.strip()
    if not address:
        return "library"
    if not address.startswith(("http://", "https://")):
        raise ValueError(
            f"orchestration.ray_address {address!r}: give the Ray dashboard address that Ray Jobs are submitted"
            " to, e.g. http://ray-head:8265 (empty: a local Ray instance)"
        )
    return "ray-job"


def spark_submit_executable() -> str:
    """``$SPARK_HOME/bin/spark-submit`` when SPARK_HOME is set, else the one on PATH (pyspark ships one)."""
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "bin" / "spark-submit").exists():
        return str(Path(home) / "bin" / "spark-submit")
    beside = Path(sys.executable).parent / "spark-submit"  # the venv's own, whatever PATH says
    if beside.exists():
        return str(beside)
    found = shutil.which("spark-submit")
    if not found:
        raise ClusterJobError("spark-submit not found: set SPARK_HOME or put spark-submit on PATH")
    return found


# Extra spark-submit options for the deployment, e.g. the driver's address as seen from the executors.
SUBMIT_ARGS_ENV = "UNISEM_SPARK_SUBMIT_ARGS"


def spark_submit_command(master: str, job: str, args: Sequence[str], executable: str = "spark-submit",
                         jobs_dir: Path = JOBS_DIR, extra: str | None = None) -> list[str]:
    """``spark-submit --master M [extra options] jobs/<job> args``; ``extra`` defaults to $UNISEM_SPARK_SUBMIT_ARGS."""
    script = jobs_dir / job
    options = shlex.split(os.environ.get(SUBMIT_ARGS_ENV, "") if extra is None else extra)
    return [executable, "--master", master, "--name", f"unisem-{Path(job).stem}", *options, str(script), *args]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_logged(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
               ok_codes: Sequence[int] = (0,)) -> int:
    """Run ``cmd`` with its output in ``log_path`` and return its exit code; any code outside ``ok_codes``
    raises ``ClusterJobError`` with the end of the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(list(cmd), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if proc.returncode not in ok_codes:
        raise ClusterJobError(
            f"{shlex.join(cmd)} exited with {proc.returncode}; log {log_path}:\n{_tail(log_path)}"
        )
    return proc.returncode


def spark_submit(master: str, job: str, args: Sequence[str], log_path: Path, ok_codes: Sequence[int] = (0,)) -> int:
    """spark-submit ``jobs/<job>`` to ``master`` and wait; returns the job's exit code (one of ``ok_codes``)."""
    script = JOBS_DIR / job
    if not script.exists():
        raise ClusterJobError(f"{script}: spark-submit entry point missing")
    # A local master runs the job's Python here: make it this interpreter (the venv), not "python3" on PATH.
    env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable} if master.startswith("local") else None
    return run_logged(spark_submit_command(master, job, args, spark_submit_executable()), log_path, env=env, ok_codes=ok_codes)


def submit_ray_job(address: str, entrypoint: Sequence[str], name: str, env: Mapping[str, str] | None = None,
                   log_path: Path | None = None, poll_s: float = 5.0, timeout_s: float | None = None) -> str:
    """Submit ``entrypoint`` as a Ray Job, wait for it, and return its submission id."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    submission_id = f"{name}-{uuid.uuid4().hex[:8]}"
    client.submit_job(
        entrypoint=shlex.join(entrypoint),
        submission_id=submission_id,
        runtime_env={"env_vars": dict(env or {})},
    )
    start = time.monotonic()
    while True:
        state = client.get_job_status(submission_id)
        status = str(getattr(state, "value", state))
        if status in _RAY_TERMINAL:
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            client.stop_job(submission_id)
            raise ClusterJobError(f"Ray job {submission_id} at {address} did not finish in {timeout_s:.0f}s")
        time.sleep(poll_s)
    logs = client.get_job_logs(submission_id)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(logs)
    if status != "SUCCEEDED":
        raise ClusterJobError(f"Ray job {submission_id} at {address} ended {status}:\n{logs[-3000:]}")
    return submission_id
