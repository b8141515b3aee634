"""Progress lines for whoever watches a run: one short line per epoch, per embedding batch, per decision.

They go through Python ``logging`` (logger ``unisem.<module>``), so an Airflow task log and any configured
handler get them; where no handler would show an INFO line (a bare Ray worker, a script), they are printed
to stderr instead, so a terminal never stays silent for minutes. ``PROGRESS_PATTERN`` finds them again in a
log stream (``unisem run`` echoes them from the ``airflow dags test`` output).
"""
from __future__ import annotations

import logging
import re
import sys

# The shapes of progress messages, as they appear anywhere in a log line.
PROGRESS_PATTERN = re.compile(
    r"(epoch \d+/\d+ loss .*?|embedding \d+/\d+ texts.*?|quality gate: .*?|promotion of .*?|validate: .*?)"
    r"(?:\s+\[[\w.]+\].*)?$"
)


def say(logger_name: str, message: str) -> None:
    """Log ``message`` at INFO on ``logger_name``, or print it to stderr when nothing would show it."""
    log = logging.getLogger(logger_name)
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def progress_text(line: str) -> str | None:
    """The progress message inside a log line, without Airflow's or structlog's decoration; None if none."""
    m = PROGRESS_PATTERN.search(line.rstrip("\n"))
    return m.group(1).strip() if m else None


def terminal_logging(level: int = logging.INFO) -> None:
    """For the CLI: unisem's INFO lines on stderr, message only, unless logging is configured already."""
    root = logging.getLogger()
    ours = logging.getLogger("unisem")
    if root.handlers or ours.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    ours.setLevel(level)
