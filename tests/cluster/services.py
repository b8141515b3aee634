"""Real cluster services on loopback for the ``cluster`` tests: started from the project's own venv and the
machine's PostgreSQL, each on free 127.0.0.1 ports in its own temp folder, stopped by PID whatever happens.

Every wait here is bounded and says which service it waited for and where its log is.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence

VENV_BIN = Path(sys.executable).parent
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class ServiceError(RuntimeError):
    """A test service did not start or answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], object], timeout_s: float, log: Path | None = None,
               interval_s: float = 1.0, proc: "Service | None" = None):
    """Poll ``check`` until it returns something truthy; raise naming ``what`` (and its log) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - "not yet" comes in many forms
            last = exc
        if proc is not None and proc.popen.poll() is not None:
            raise ServiceError(f"{what}: the process exited with {proc.popen.returncode}; log {proc.log}:\n"
                               f"{proc.tail()}")
        time.sleep(interval_s)
    tail = ""
    if log is not None and log.exists():
        tail = log.read_text(errors="replace")[-3000:]
    raise ServiceError(f"{what}: not ready after {timeout_s:.0f}s (last: {last!r}); log {log}:\n{tail}")


def http_json(url: str, timeout_s: float = 5.0, method: str = "GET", body: object = None,
              headers: Mapping[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **dict(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout_s) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Service:
    """One started process (its own session, so its children form one process group) with its log."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, env: Mapping[str, str],
                 user: str | None = None, cwd: Path | None = None) -> None:
        self.name, self.cmd, self.log = name, list(cmd), log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(log, "ab")
        preexec = None
        if user is not None:
            pw = pwd.getpwnam(user)

            def preexec() -> None:  # noqa: F811 - drop root before exec (PostgreSQL refuses root)
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        self.popen = subprocess.Popen(self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=dict(env),
                                      cwd=str(cwd) if cwd else None, start_new_session=True, preexec_fn=preexec)
        self.pid = self.popen.pid

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
        """Signal the process group this Service started (by its PID), then SIGKILL what is left."""
        for s in (sig, signal.SIGKILL):
            try:
                os.killpg(self.pid, s)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # children that outlived the leader
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._fh.close()


def kill_pids_using(marker: str, exclude: Sequence[int] = ()) -> list[int]:
    """SIGKILL every process whose command line contains ``marker`` (a temp path unique to this test run),
    by PID: daemons that left the process group (Ray's workers) are found this way and only these."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def pids_matching(*needles: str) -> list[int]:
    """PIDs whose command line contains every needle."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            out.append(int(entry.name))
    return out


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This test process's environment with the venv first on PATH and no inherited service addresses."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MLFLOW_", "RAY_", "SPARK_", "UNISEM_", "PYSPARK"))}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                "SPARK_LOCAL_IP": "127.0.0.1", "OMP_NUM_THREADS": "1"})
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------------------- PostgreSQL
def pg_bin(name: str) -> str:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        raise ServiceError(f"PostgreSQL's {name} not found (apt-get install postgresql; .ci/run does it)")
    return found


def pg_user() -> str:
    """An unprivileged user for PostgreSQL, which refuses to run as root: ``postgres`` (made by the apt
    package), else one created here."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "unisem-pg"], check=True, timeout=60)
        return "unisem-pg"


def start_postgres(root: Path) -> tuple[Service, int]:
    user = pg_user()
    pw = pwd.getpwnam(user)
    root.mkdir(parents=True, exist_ok=True)
    data, sock = root / "data", root / "sock"
    sock.mkdir(exist_ok=True)
    for p in (root, sock):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    env = base_env({"LC_ALL": "C.UTF-8"})
    init = subprocess.run(["runuser", "-u", user, "--", pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                           "--auth=trust", "-E", "UTF8"], env=env, capture_output=True, text=True, timeout=300)
    if init.returncode != 0:
        raise ServiceError(f"initdb failed: {init.stdout[-2000:]}{init.stderr[-2000:]}")
    port = free_port()
    svc = Service("postgres", ["runuser", "-u", user, "--", pg_bin("postgres"), "-D", str(data), "-p", str(port),
                               "-h", "127.0.0.1", "-k", str(sock), "-c", "fsync=off", "-c", "max_connections=200",
                               "-c", "shared_buffers=32MB"], root / "postgres.log", env)
    wait_until("PostgreSQL", lambda: subprocess.run([pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                                    capture_output=True, timeout=10).returncode == 0,
               120, svc.log, proc=svc)
    for db in ("airflow",):
        subprocess.run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db],
                       check=True, capture_output=True, timeout=60, env=env)
    return svc, port
