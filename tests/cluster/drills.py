"""Rows of benchmarks/results/cluster_drills.json: each cluster test that is a drill records what it showed.

``benchmarks/cluster_drills.py`` sets ``UNISEM_DRILL_RESULTS`` to a JSON-lines file; without it nothing is
recorded and the tests only assert.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS_ENV = "UNISEM_DRILL_RESULTS"


@contextmanager
def drill(name: str, command: str):
    """Time the body; on exit append ``{drill, outcome, seconds, passed, command}`` (outcome set by the body)."""
    row = {"drill": name, "outcome": "", "seconds": None, "passed": False, "command": command}
    start = time.monotonic()
    try:
        yield row
        row["passed"] = True
    except BaseException as exc:
        row["outcome"] = row["outcome"] or f"{type(exc).__name__}: {str(exc)[:500]}"
        raise
    finally:
        row.setdefault("seconds", None)
        if row["seconds"] is None:
            row["seconds"] = round(time.monotonic() - start, 1)
        target = os.environ.get(RESULTS_ENV)
        if target:
            with open(Path(target), "a") as fh:
                fh.write(json.dumps(row) + "\n")
