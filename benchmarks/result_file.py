"""What every single-result benchmark ends with: the machine's state beside the figures, written atomically.

The machine is shared, so a figure without the load it was measured under cannot be compared with another.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
from pathlib import Path
from typing import Any, Sequence

# Options that only say where outputs go: a recorded command leaves them out, so it reruns anywhere.
OUTPUT_OPTIONS = ("--results", "--work")


def rerun_command(script: str, argv: Sequence[str]) -> str:
    """``python <script> <argv>`` without the ``OUTPUT_OPTIONS`` (and their values)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in OUTPUT_OPTIONS:
            skip = True
        elif not a.startswith(tuple(f"{o}=" for o in OUTPUT_OPTIONS)):
            kept.append(a)
    return f"python {script} " + " ".join(shlex.quote(a) for a in kept)


def machine_fields(load_start: tuple[float, ...] | list[float]) -> dict[str, Any]:
    """Load averages at start and end of the run, and the machine in words."""
    return {
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs",
    }


def write_result(path: Path, result: dict[str, Any]) -> None:
    """``result`` as indented JSON at ``path`` (through a temporary file, so a crash leaves the old one), echoed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(json.dumps(result, indent=2))
