"""Many Beauty runs side by side on one machine (a GPU machine with many cores), in two timed phases.

    python benchmarks/beauty_grid.py --device cuda --phase1-budget 300 --phase2-budget 180 --results out.json
    python benchmarks/beauty_grid.py --device cuda --grid cold     # the cold-start grid (COLD_GRID), one phase

Phase 1 starts every run of ``PHASE1`` at once: the seeds and ablations of the issue's grid, and a sweep of
the unified CE model's own knobs (``SWEEP``, seed 42). Phase 2 then trains seeds 7 and 13 of the sweep
configuration with the best *validation* full-ranking NDCG@10 (test figures never choose a configuration).
Every run is one ``benchmarks/beauty.py`` invocation with ``--time-budget``: a run that is still improving
when its phase ends is stopped after that epoch, evaluated from its best checkpoint and marked so.
Each row records its own ``beauty.py`` command; this script only schedules them. Logs go to ``--logs``.

On a GPU machine start CUDA MPS first (``nvidia-cuda-mps-control -d``), so that the 21 processes share the GPU
without context switches; the committed H200 rows were made that way (all 23 runs in 336 s). The text
embeddings are read from the benchmark's one-file cache (``beauty_data.py``), so that machine needs torch but
not the text model; ``UNISEM_BEAUTY_DIR`` points at a copy of the data there.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from beauty import load_rows, overrides_key  # noqa: E402  (the row format belongs to beauty.py)

SEEDS = (42, 7, 13)
# Knobs of the unified model tried on top of the paper configuration (CE loss, hybrid distance, seed 42).
SWEEP: tuple[tuple[str, ...], ...] = (
    (),
    ("model.id_dim=16",),
    ("model.id_dim=32",),
    ("model.id_dim=64",),
    ("training.lambda_text=0.1",),
    ("quantizer.codebook_update=gradient",),
)
PHASE1: tuple[tuple[str, ...], ...] = (
    *(("--variant", "unified", "--loss", "ce", *[f"--set={o}" for o in s]) for s in SWEEP),
    *(("--variant", "unified", "--loss", "ce", "--seed", str(seed)) for seed in SEEDS[1:]),
    *(("--variant", "id-only", "--loss", "ce", "--seed", str(seed)) for seed in SEEDS),
    ("--variant", "id-only", "--loss", "ce", "--set=model.id_only_dim=128"),  # is a gain only width?
    ("--variant", "unified", "--loss", "ce", "--distance", "cosine"),
    ("--variant", "unified", "--loss", "ce", "--distance", "euclidean"),
    ("--variant", "semantic-only", "--loss", "ce"),
    *(("--variant", variant, "--loss", "bce", "--seed", str(seed)) for variant in ("unified", "id-only") for seed in SEEDS),
)

# The cold-start question (``--grid cold``): 10% of the items held out of training, the product's 64-d IDs,
# ID dropout 0 and two other values (does training without IDs help new items?), the other variants and the
# untrained baselines; the unified model without ID dropout is also ranked with the text prior for items
# without interactions (``--new-item-prior``: its setting is chosen on validation, within the run). One phase:
# no configuration is chosen from these rows.
COLD_SHARE = "0.1"
COLD_GRID: tuple[tuple[str, ...], ...] = (
    *(("--variant", "unified", "--loss", "ce", "--seed", str(seed), "--set=model.id_dim=64",
       f"--set=model.id_dropout={p}", *(("--new-item-prior",) if p == "0.0" else ())) for p in ("0.0", "0.1", "0.3")
      for seed in SEEDS),
    *(("--variant", "id-only", "--loss", "ce", "--seed", str(seed)) for seed in SEEDS),
    ("--variant", "semantic-only", "--loss", "ce"),
    ("--variant", "text-knn"),
    ("--variant", "popularity"),
)
COLD_GRID = tuple((*run, "--cold-share", COLD_SHARE) for run in COLD_GRID)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--grid", choices=("main", "cold"), default="main",
                   help="main: the seeds, ablations and sweep (two phases); cold: the cold-start grid (one phase)")
    p.add_argument("--phase1-budget", type=float, default=300.0, help="training seconds of each phase-1 run")
    p.add_argument("--phase2-budget", type=float, default=180.0, help="training seconds of each phase-2 run")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--results", type=Path, default=HERE / "results" / "beauty.json")
    p.add_argument("--logs", type=Path, default=Path("beauty-grid-logs"))
    p.add_argument("--only", type=int, default=0, help="start only the first N phase-1 runs (a dry run)")
    p.add_argument("--max-epochs", type=int, default=200)
    return p.parse_args(argv)


def run_all(runs: list[tuple[str, ...]], args: argparse.Namespace, budget: float, phase: str) -> list[dict]:
    """Start every run at once and wait for all of them; a failed run is reported, not fatal."""
    args.logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, run in enumerate(runs):
        cmd = [sys.executable, str(HERE / "beauty.py"), *run, "--device", args.device, "--threads", "1",
               "--patience", str(args.patience), "--max-epochs", str(args.max_epochs),
               "--time-budget", str(budget), "--results", str(args.results),
               "--work", str(args.logs / f"{phase}-{i}")]
        log = open(args.logs / f"{phase}-{i}.log", "w")
        log.write(" ".join(cmd) + "\n")
        log.flush()
        procs.append((run, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    start = time.perf_counter()
    done = []
    for run, proc, log in procs:
        rc = proc.wait()
        log.close()
        done.append({"phase": phase, "run": " ".join(run), "rc": rc, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(done[-1]), flush=True)
    return done


def best_sweep(results: Path, device: str) -> tuple[str, ...]:
    """The sweep overrides whose seed-42 unified CE run had the best validation full NDCG@10."""
    candidates = {overrides_key(s): s for s in SWEEP}
    scored = [
        (r["valid_best"].get("NDCG@10", 0.0), r["overrides"])
        for r in load_rows(results)
        if r["variant"] == "unified" and r["loss"] == "ce" and r["distance"] == "hybrid" and r["seed"] == SEEDS[0]
        and r["protocol"] == "full" and r["device"] == device.split(":")[0] and r["overrides"] in candidates
    ]
    if not scored:
        raise SystemExit(f"{results}: no unified CE sweep rows to choose from")
    value, best = max(scored)
    print(json.dumps({"best_sweep": best or "(paper configuration)", "valid_NDCG@10": value}), flush=True)
    return candidates[best]


def main(argv=None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    grid = COLD_GRID if args.grid == "cold" else PHASE1
    phase1 = list(grid[: args.only] if args.only else grid)
    done = run_all(phase1, args, args.phase1_budget, "phase1")
    if not args.only and args.grid == "main":
        best = best_sweep(args.results, args.device)
        if best:  # the paper configuration's seeds 7 and 13 are already in phase 1
            seeds = [("--variant", "unified", "--loss", "ce", "--seed", str(s), *[f"--set={o}" for o in best]) for s in SEEDS[1:]]
            done += run_all(seeds, args, args.phase2_budget, "phase2")
    timing = {"command": "python benchmarks/beauty_grid.py " + " ".join(sys.argv[1:]),
              "wall_seconds": round(time.perf_counter() - start, 1), "runs": done}
    suffix = "_grid.json" if args.grid == "main" else "_cold_grid.json"
    args.results.with_name(args.results.stem + suffix).write_text(json.dumps(timing, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
