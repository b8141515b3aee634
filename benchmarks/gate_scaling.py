"""How the quality gate and the feature job scale: wall seconds of validate + features on generated data.

    python benchmarks/gate_scaling.py                       # 100k .. 10M interactions (items = interactions / 10)
    python benchmarks/gate_scaling.py --sizes 100000 1000000

Data comes from ``unisem.data.large.generate_large`` (cached in --data-dir, outside the repository). One
Spark session (the project's defaults, local[*]) serves every size; it is warmed up on a tiny run first so
the JVM start is not charged to the smallest size. Results are merged by size into
benchmarks/results/gate_scaling.json (a list of {"interactions", "items", "seconds", ...}) and plotted in
benchmarks/results/gate_scaling.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unisem.config import load_config  # noqa: E402
from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE  # noqa: E402
from unisem.data.large import generate_large  # noqa: E402
from unisem.data.features import build_features  # noqa: E402
from unisem.data.spark import spark_session  # noqa: E402
from unisem.quality.gate import run_gate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gate_scaling.json"
PLOT = ROOT / "benchmarks" / "results" / "gate_scaling.png"
DEFAULT_SIZES = (100_000, 1_000_000, 3_000_000, 10_000_000)


def dataset(data_dir: Path, interactions: int, items: int) -> Path:
    folder = data_dir / f"large-{interactions}-{items}"
    if not (folder / CATALOG_FILE).exists():
        generate_large(folder, items=items, interactions=interactions, seed=0)
    return folder


def measure(cfg, data: Path, work: Path) -> dict:
    t0 = time.perf_counter()
    gate = run_gate(cfg, data / CATALOG_FILE, data / INTERACTIONS_FILE, work / "quality", home=work / "home")
    t1 = time.perf_counter()
    build_features(cfg, data / CATALOG_FILE, data / INTERACTIONS_FILE, work / "features")
    t2 = time.perf_counter()
    inside = json.loads(gate.verdict_path.read_text()).get("seconds", {})
    return {"validate_seconds": round(t1 - t0, 1), "features_seconds": round(t2 - t1, 1),
            "seconds": round(t2 - t0, 1), "verdict": gate.verdict,
            "gate_measures_seconds": inside.get("measures"), "gate_gx_seconds": inside.get("great_expectations")}


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["interactions"])
    x = [r["interactions"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, [r["seconds"] for r in rows], "o-", label="validate + features")
    ax.plot(x, [r.get("validate_seconds", 0) for r in rows], "s--", label="validate (gate)")
    ax.plot(x, [r.get("features_seconds", 0) for r in rows], "^--", label="features")
    if rows:
        ax.plot(x, [rows[-1]["seconds"] * v / x[-1] for v in x], ":", color="grey", label="linear through the largest")
    ax.axhline(180, color="red", linewidth=0.8, label="goal at 10M: 180 s")
    ax.set(xscale="log", yscale="log", xlabel="interactions (items = interactions / 10)", ylabel="wall seconds",
           title="Quality gate + feature job on Spark local[*]")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="interaction counts")
    parser.add_argument("--items-per-interaction", type=float, default=0.1)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "unisem-bench-data")
    args = parser.parse_args()
    command = ("python benchmarks/gate_scaling.py " + shlex.join(sys.argv[1:])).strip()
    cfg = load_config()
    spark = spark_session()
    cores = spark.sparkContext.defaultParallelism
    rows = {(r["interactions"], r["items"]): r for r in (json.loads(RESULTS.read_text()) if RESULTS.exists() else [])}
    with tempfile.TemporaryDirectory(prefix="gate-bench-") as scratch:
        warm = dataset(args.data_dir, 20_000, 2_000)
        measure(cfg, warm, Path(scratch) / "warmup")
        for n in sorted(args.sizes):
            items = max(10, int(n * args.items_per_interaction))
            data = dataset(args.data_dir, n, items)
            result = measure(cfg, data, Path(scratch) / str(n))
            row = {"interactions": n, "items": items, **result, "spark_cores": cores,
                   "load_average": round(os.getloadavg()[0], 1), "command": command}
            rows[(n, items)] = row
            print(json.dumps(row), flush=True)
            RESULTS.write_text(json.dumps(sorted(rows.values(), key=lambda r: r["interactions"]), indent=2) + "\n")
            plot(list(rows.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
