"""Checks before a pipeline run starts: inputs, config and services, in seconds rather than after retries.

A DAG run that starts on a missing catalog spends its retries (with backoff, twenty minutes and more)
before ``validate`` fails with the same message it could have given at once. So ``unisem run`` checks,
before Airflow starts:

- the config (file, overrides and the run's params) loads and validates;
- each input (``data.catalog``, ``data.interactions``, or both empty for the demo data) exists, is a
  readable Parquet file or a folder of Parquet part files, and has the contract's key columns (only the
  Parquet footer is read);
- every configured service answers a TCP connection within ``timeout`` seconds: a ``spark://`` master, a
  Ray address, an ``http(s)`` MLflow tracking server. Local ones (``local[*]``, a local Ray instance,
  SQLite) need nothing.

Every failure is a ``PreflightError`` naming the setting, the path or the service and its address.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from unisem.config import UnisemConfig, load_config
from unisem.data.contract import InputError

PARQUET_MAGIC = b"PAR1"
DEFAULT_TIMEOUT_S = 3.0
REQUIRED = {
    "data.catalog": (("item_id",), ()),
    "data.interactions": (("user_id", "item_id"), ("timestamp", "position")),
}


class PreflightError(InputError):
    """The run cannot start: an input, the config or a service is not there; the message says which."""


class PreflightResult(NamedTuple):
    config: UnisemConfig
    inputs: tuple[Path, Path] | None  # None: the demo data
    services: tuple[str, ...]  # "spark master spark://h:7077", ... that answered
    seconds: float


def _parquet_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".parquet", ".pq")
                  and not p.name.startswith((".", "_")))


def check_input(key: str, value: str) -> Path:
    """The resolved input path, if it is a readable contract Parquet file or part-file folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise PreflightError(f"{key}: {path} does not exist")
    if path.is_dir():
        parts = _parquet_files(path)
        if not parts:
            raise PreflightError(f"{key}: {path} is a folder without Parquet part files")
        first = parts[0]
    elif not path.is_file():
        raise PreflightError(f"{key}: {path} is not a file")
    else:
        first = path
    try:
        with open(first, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise PreflightError(f"{key}: {first} cannot be read: {exc.strerror or exc}") from exc
    if head != PARQUET_MAGIC:
        hint = " (import CSV / JSON with `unisem data import table`)" if first.suffix in (".csv", ".tsv", ".json", ".jsonl") else ""
        raise PreflightError(f"{key}: {first} is not a Parquet file{hint}")
    try:
        columns = set(pq.read_schema(first).names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PreflightError(f"{key}: {first} is not readable Parquet: {exc}") from exc
    required, one_of = REQUIRED[key]
    missing = [c for c in required if c not in columns]
    if missing:
        raise PreflightError(f"{key}: {first} has no column {', '.join(missing)} (found: {', '.join(sorted(columns))})")
    if one_of and not columns.intersection(one_of):
        raise PreflightError(f"{key}: {first} has neither a {' nor a '.join(one_of)} column to order events by")
    return path


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname:
        raise PreflightError(f"cannot read a host from the address {address!r}")
    return parts.hostname, parts.port or default_port


def check_service(what: str, address: str, default_port: int, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Open (and close) one TCP connection to the service, waiting at most ``timeout`` seconds."""
    host, port = _host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise PreflightError(
            f"{what} at {address} ({host}:{port}) is not reachable: {reason} within {timeout:g} s"
        ) from exc
    return f"{what} {address}"


def services(cfg: UnisemConfig) -> list[tuple[str, str, int]]:
    """``(what, address, default port)`` of every remote service the run would talk to."""
    from unisem.registry.tracking import tracking_uri

    out = []
    master = cfg.orchestration.spark_master.strip()
    if master.startswith("spark://"):
        out += [("Spark master", a if a.startswith("spark://") else f"spark://{a}", 7077)
                for a in master[len("spark://"):].split(",")]
    ray = cfg.orchestration.ray_address.strip() or os.environ.get("RAY_ADDRESS", "").strip()
    if ray and ray != "auto" and not ray.startswith("local"):
        out.append(("Ray", ray, 8265 if ray.startswith("http") else 6379))
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        out.append(("MLflow tracking server", uri, 443 if uri.startswith("https") else 80))
    return out


def preflight(config_path: str | None, overrides: Sequence[str], params: Mapping[str, object] | None = None,
              timeout: float = DEFAULT_TIMEOUT_S, need_services: bool = True) -> PreflightResult:
    """Check what the run ``config_path`` + ``overrides`` + DAG ``params`` would use; raise on the first problem."""
    from unisem.pipeline.spec import overrides_from_params, values_from_params

    started = time.perf_counter()
    params = dict(params or {})
    cfg = load_config(config_path or None, (*overrides, *overrides_from_params(params)), dict(values_from_params(params)))
    catalog, interactions = cfg.data.catalog.strip(), cfg.data.interactions.strip()
    inputs = None
    if bool(catalog) != bool(interactions):
        raise PreflightError(
            "data.catalog and data.interactions must be given together (both empty = the demo data); "
            f"got catalog={catalog!r} interactions={interactions!r}"
        )
    if catalog:
        inputs = (check_input("data.catalog", catalog), check_input("data.interactions", interactions))
    answered = tuple(check_service(what, address, port, timeout)
                     for what, address, port in (services(cfg) if need_services else ()))
    return PreflightResult(cfg, inputs, answered, time.perf_counter() - started)
