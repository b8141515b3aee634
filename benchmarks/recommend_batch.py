"""Seconds for the nightly ``recommend`` stage on Amazon Beauty: top-10 for all 22,363 users with the champion,
through Spark (``local[*]``: mapInPandas over the registered pyfunc), written as Parquet.

Uses the champion that ``serving_rest.py`` prepared in the same ``--home`` (run that first). Writes
benchmarks/results/recommend_batch.json. Skips (exit 0, with a message) when the Beauty data is absent.

    .venv/bin/python benchmarks/recommend_batch.py
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "recommend_batch.json"
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from result_file import machine_fields, write_result  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, default=None, help="the serving benchmark's home (default .unisem/bench/serving)")
    args = p.parse_args(argv)
    from beauty_data import BEAUTY_DIR

    if not (BEAUTY_DIR / "sequences.txt").exists():
        print(f"skipped: Amazon Beauty data not found in {BEAUTY_DIR}")
        return 0
    from unisem.home import unisem_home

    home = (args.home or unisem_home() / "bench" / "serving").resolve()
    if not (home / "champion.json").exists():
        print(f"no champion in {home}: run benchmarks/serving_rest.py first", file=sys.stderr)
        return 1
    os.environ["UNISEM_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from unisem.config import load_config
    from unisem.registry.batch import recommend_all

    load_start = os.getloadavg()
    cfg = load_config()
    start, cpu = time.perf_counter(), time.process_time()
    manifest = recommend_all(cfg, home / "features", home / "batch" / "recommendations", "bench")
    wall, cpu_driver = time.perf_counter() - start, time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {
        "benchmark": "recommend_batch",
        "command": ".venv/bin/python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "seconds": round(wall, 1),
        "users": manifest["users"], "rows": manifest["rows"], "k": manifest["k"],
        "fallback_users": manifest["fallback_users"], "model_version": manifest["model_version"],
        "spark_master": cfg.orchestration.spark_master,
        "includes": "Spark session start, model download and per-worker load, scoring, Parquet write, manifest",
        "cpu_seconds": {"driver": round(cpu_driver, 1),
                        "children": round(children.ru_utime + children.ru_stime, 1)},
        **machine_fields(load_start),
    }
    write_result(RESULT, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
