"""Where a heavy stage runs: in this process (the library), or on a cluster named by the config.

- Spark: a ``local[...]`` master runs the library in-process; any other master (``spark://``, ``yarn``,
  ``k8s://``) goes through ``spark-submit`` of a ``jobs/`` entry point, so the Spark driver runs with the
  cluster's own settings and jars rather than inside the Airflow worker's Python.
- Ray: an empty address trains in-process (a local Ray instance); a Ray dashboard address
  (``http://head:8265``) submits a Ray Job whose entry point is ``unisem stage train`` for the same run, so
  the training driver runs on the cluster next to its GPU workers.
Both stream the job's output line by line into Python logging (the Airflow task log) and a side file, wait
at most the configured time (``orchestration.timeouts``), check first that the service answers, and raise
with the service, its address and the tail of the log when anything fails.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Literal, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO_ROOT / "jobs"

# Ray Jobs end in one of these states.
_RAY_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


LOG = logging.getLogger("unisem.cluster")


class ClusterJobError(RuntimeError):
    """A spark-submit or Ray job failed; the message carries the command and the end of its log."""


class ServiceUnavailable(ClusterJobError):
    """A cluster service (Spark master, Ray dashboard) does not answer at its configured address."""


def spark_mode(master: str) -> Literal["library", "spark-submit"]:
    master = master.strip()
    return "library" if (not master or master.startswith("local")) else "spark-submit"


def ray_mode(address: str) -> Literal["library", "ray-job"]:
    """``http(s)://`` is a Ray dashboard: submit a Ray Job there. Anything else trains from this process:
    empty starts a local Ray instance, ``host:port`` (what Ray sets in a job driver's RAY_ADDRESS) joins it."""
    address = address.strip()
    return "ray-job" if address.startswith(("http://", "https://")) else "library"


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


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    """``spark://host:7077`` / ``http://host:8265`` / ``host:6379`` -> (host, port)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    rest = rest.split(",", 1)[0]  # a Spark HA master list: the first one answers for the check
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, default_port
    try:
        return host, int(port)
    except ValueError:
        return rest, default_port


def check_tcp(service: str, address: str, timeout_s: float, default_port: int) -> None:
    """Fail fast, naming the service and its address, when nothing listens there."""
    host, port = _host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise ServiceUnavailable(f"{service} at {address} is not reachable ({host}:{port}, "
                                 f"waited at most {timeout_s:g}s): {exc}") from exc


def spark_master_check(master: str, timeout_s: float) -> None:
    """A ``spark://`` master must accept connections before anything is submitted to it."""
    if master.startswith("spark://"):
        check_tcp("Spark master", master, timeout_s, 7077)


def _pump(stream, log, logger: logging.Logger, prefix: str) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        logger.info("%s%s", prefix, line.rstrip("\n"))


def run_logged(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
               ok_codes: Sequence[int] = (0,), timeout_s: float | None = None, service: str = "",
               prefix: str = "") -> int:
    """Run ``cmd`` and return its exit code; its output goes line by line both to ``log_path`` and to
    Python logging (which is the Airflow task log), so a platform engineer sees it where they look.

    A code outside ``ok_codes`` raises ``ClusterJobError`` with the end of the log; running past
    ``timeout_s`` kills the whole process group (spark-submit's JVM with it) and raises, naming ``service``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                errors="replace", env={**os.environ, **(env or {})}, start_new_session=True)
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, LOG, prefix), daemon=True)
        pump.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            pump.join(timeout=10)
            raise ClusterJobError(
                f"{service or cmd[0]}: did not finish within {timeout_s:g}s and was stopped "
                f"(orchestration.timeouts); command: {shlex.join(cmd)}; log {log_path}:\n{_tail(log_path)}"
            ) from None
        pump.join(timeout=30)
    if returncode not in ok_codes:
        raise ClusterJobError(
            f"{service + ': ' if service else ''}{shlex.join(cmd)} exited with {returncode}; "
            f"log {log_path}:\n{_tail(log_path)}"
        )
    return returncode


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group this module started (and only to it)."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived the leader (a JVM, a Python worker) would keep the night's resources
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def spark_submit(master: str, job: str, args: Sequence[str], log_path: Path, ok_codes: Sequence[int] = (0,),
                 timeout_s: float | None = None, connect_timeout_s: float = 10.0) -> int:
    """spark-submit ``jobs/<job>`` to ``master`` and wait at most ``timeout_s``; returns the job's exit code
    (one of ``ok_codes``). A ``spark://`` master that does not answer fails at once, naming it."""
    script = JOBS_DIR / job
    if not script.exists():
        raise ClusterJobError(f"{script}: spark-submit entry point missing")
    spark_master_check(master, connect_timeout_s)
    # A local master runs the job's Python here: make it this interpreter (the venv), not "python3" on PATH.
    env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable} if master.startswith("local") else None
    return run_logged(spark_submit_command(master, job, args, spark_submit_executable()), log_path, env=env,
                      ok_codes=ok_codes, timeout_s=timeout_s, service=f"Spark job {job} on master {master}",
                      prefix=f"[spark {Path(job).stem}] ")


def ray_dashboard_check(address: str, timeout_s: float, headers: Mapping[str, str] | None = None) -> None:
    """The Ray dashboard must answer ``/api/version`` (its Jobs API is there only with ``ray[default]``)."""
    import urllib.error
    import urllib.request

    url = address.rstrip("/") + "/api/version"
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ServiceUnavailable(_ray_auth_message(address, exc)) from exc
        raise ServiceUnavailable(f"Ray dashboard at {address} answered {exc.code} at {url}: is this the dashboard "
                                 "of a Ray cluster started with ray[default] (the Jobs API)?") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(f"Ray dashboard at {address} is not reachable (waited at most {timeout_s:g}s): "
                                 f"{getattr(exc, 'reason', exc)}") from exc


def _ray_auth_message(address: str, exc: BaseException) -> str:
    return (f"Ray cluster at {address} refused the request ({exc}): it uses token authentication; give its token "
            "as orchestration.ray_auth_token or RAY_AUTH_TOKEN (see `ray get-auth-token` on the head)")


def ray_auth_headers(token: str = "") -> dict[str, str]:
    """The bearer header for a Ray cluster with token authentication: the configured token, else
    ``$RAY_AUTH_TOKEN``; none when neither is set (Ray's client then reads its own token file)."""
    token = token.strip() or os.environ.get("RAY_AUTH_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _new_lines(logs: str, seen: int) -> tuple[list[str], int]:
    """The complete lines of ``logs`` after the first ``seen`` characters, and the new count seen."""
    chunk = logs[seen:]
    cut = chunk.rfind("\n")
    if cut < 0:
        return [], seen
    return chunk[:cut].split("\n"), seen + cut + 1


# What the Jobs API answers while the head's job agent is still starting.
NO_AGENT = "No available agent to submit job"


def submit_ray_job(address: str, entrypoint: Sequence[str], name: str, env: Mapping[str, str] | None = None,
                   log_path: Path | None = None, poll_s: float = 2.0, timeout_s: float | None = None,
                   auth_token: str = "", connect_timeout_s: float = 10.0, agent_wait_s: float = 120.0) -> str:
    """Submit ``entrypoint`` as a Ray Job, stream its log into Python logging (the Airflow task log) and
    ``log_path`` while waiting at most ``timeout_s``, and return its submission id.

    Past the timeout the job is stopped and the error names the cluster; a refused token says so. A head
    whose job agent has not registered yet is retried for at most ``agent_wait_s``.
    """
    headers = ray_auth_headers(auth_token)
    ray_dashboard_check(address, connect_timeout_s, headers)
    from ray.job_submission import JobSubmissionClient

    submission_id = f"{name}-{uuid.uuid4().hex[:8]}"
    agent_deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            client = JobSubmissionClient(address, headers=headers or None)
            client.submit_job(
                entrypoint=shlex.join(entrypoint),
                submission_id=submission_id,
                runtime_env={"env_vars": dict(env or {})},
            )
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises plain RuntimeError/ConnectionError for all of these
            text = str(exc)
            if any(s in text for s in ("401", "403", "Unauthorized", "nauthenticated", "auth")):
                raise ClusterJobError(_ray_auth_message(address, exc)) from exc
            if NO_AGENT in text and time.monotonic() < agent_deadline:
                # The dashboard answers before its job agent has registered (seconds to a minute after
                # `ray start` on a busy head): the job was not created, so the same id is submitted again.
                LOG.info("Ray Jobs API at %s: no job agent yet; submitting %s again in %.0fs", address, name, poll_s)
                time.sleep(poll_s)
                continue
            waited = f" (no job agent within {agent_wait_s:.0f}s)" if NO_AGENT in text else ""
            raise ClusterJobError(f"Ray Jobs API at {address}: cannot submit {name}{waited}: {exc}") from exc
    LOG.info("submitted Ray job %s to %s", submission_id, address)
    start = time.monotonic()
    seen = 0
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w") if log_path is not None else None
    try:
        while True:
            status = str(getattr(state := client.get_job_status(submission_id), "value", state))
            try:
                logs = client.get_job_logs(submission_id)
            except Exception:  # noqa: BLE001 - the log may not exist yet while the job is PENDING
                logs = ""
            lines, seen = _new_lines(logs, seen)
            for line in lines:
                LOG.info("[ray %s] %s", submission_id, line)
                if log is not None:
                    log.write(line + "\n")
            if log is not None:
                log.flush()
            if status in _RAY_TERMINAL:
                break
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                client.stop_job(submission_id)
                raise ClusterJobError(f"Ray job {submission_id} at {address} did not finish within "
                                      f"{timeout_s:g}s (orchestration.timeouts.ray_job_s); it was stopped")
            time.sleep(poll_s)
        tail = logs[seen:]
        if tail and log is not None:
            log.write(tail)
    finally:
        if log is not None:
            log.close()
    if status != "SUCCEEDED":
        raise ClusterJobError(f"Ray job {submission_id} at {address} ended {status}:\n{logs[-3000:]}")
    return submission_id
