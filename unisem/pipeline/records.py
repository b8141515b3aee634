"""One small JSON record per pipeline stage of a run: what it produced, or why it failed.

The run report is built from these records rather than from Airflow's metadata, so the same summary comes
out of an Airflow run, a ``unisem stage`` call or a test, and a report task can explain a run whose
upstream tasks failed or were skipped. The first stage of a run clears the records, so a rerun of the same
logical date never reports a stage result left over from an earlier attempt.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from unisem.atomic import write_text_atomic
from unisem.data.contract import InputError
from unisem.home import RunLayout
from unisem.pipeline.outputs import STAGES

# Errors that no retry can fix: bad or missing input, degenerate data. Inside an Airflow task they fail the
# task at once (AirflowFailException) instead of spending its retries; anywhere else they propagate as is.
NOT_RETRIED: tuple[type[BaseException], ...] = (InputError, FileNotFoundError)

T = TypeVar("T", bound=Mapping[str, Any])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_path(layout: RunLayout, stage: str) -> Path:
    return layout.pipeline / f"{stage}.json"


def _timing(started_at: str | None, seconds: float | None) -> dict[str, Any]:
    return {} if seconds is None else {"started_at": started_at, "seconds": round(float(seconds), 3)}


def write_record(layout: RunLayout, stage: str, outputs: Mapping[str, Any], started_at: str | None = None,
                 seconds: float | None = None) -> Path:
    record = {"stage": stage, "status": "ok", "finished_at": _now(), "outputs": dict(outputs),
              **_timing(started_at, seconds)}
    return write_text_atomic(record_path(layout, stage), json.dumps(record, indent=2, sort_keys=True, default=str))


def write_failure(layout: RunLayout, stage: str, exc: BaseException, started_at: str | None = None,
                  seconds: float | None = None) -> Path:
    record = {
        "stage": stage,
        "status": "failed",
        "finished_at": _now(),
        **_timing(started_at, seconds),
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }
    return write_text_atomic(record_path(layout, stage), json.dumps(record, indent=2, sort_keys=True, default=str))


def read_records(layout: RunLayout) -> dict[str, dict[str, Any]]:
    """The records present, by stage name; a record that cannot be read is reported as such, not skipped."""
    out: dict[str, dict[str, Any]] = {}
    if not layout.pipeline.is_dir():
        return out
    for path in sorted(layout.pipeline.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            out[path.stem] = {"stage": path.stem, "status": "failed", "error": f"{path}: unreadable record: {exc}"}
    return out


def recorded_outputs(layout: RunLayout) -> dict[str, Any]:
    """The outputs of every successful stage of the run merged in stage order: the upstream of a rerun."""
    records = read_records(layout)
    out: dict[str, Any] = {}
    for stage in STAGES:
        rec = records.get(stage) or {}
        if rec.get("status") == "ok":
            out.update(rec.get("outputs") or {})
    return out


def clear_records(layout: RunLayout) -> None:
    shutil.rmtree(layout.pipeline, ignore_errors=True)


def _in_airflow_task() -> bool:
    """True inside a running Airflow task (whose process has the task SDK loaded and a current context)."""
    if "airflow.sdk" not in sys.modules:
        return False
    try:
        from airflow.sdk import get_current_context

        get_current_context()
    except Exception:  # noqa: BLE001 - no context: not inside a task
        return False
    return True


def not_retried(exc: BaseException) -> BaseException:
    """The exception to raise for ``exc``: Airflow's fail-without-retry for an input error inside a task."""
    if not isinstance(exc, NOT_RETRIED) or not _in_airflow_task():
        return exc
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(f"{type(exc).__name__}: {exc} (input error: not retried)")


def recorded(layout: RunLayout, stage: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` and record its JSON-able result, or record the error and re-raise it (``not_retried``)."""
    started_at, clock = _now(), time.monotonic()
    try:
        result = fn()
    except BaseException as exc:
        write_failure(layout, stage, exc, started_at, time.monotonic() - clock)
        failure = not_retried(exc)
        if failure is exc:
            raise
        raise failure from exc
    write_record(layout, stage, result, started_at, time.monotonic() - clock)
    return result
