"""How long evaluation takes on Amazon Beauty (22,363 users x 12,101 items), apart from the model itself.

Times, separately: drawing the sampled-99 negatives (once per dataset, cached after), the scoring calls (a
stand-in scorer with the real model's last step: [B, 72] user states x [72, N+1] item table), and the
rank computation around them (padding, seen-item exclusion, comparisons, gathers) for the full-ranking
and sampled-99 protocols, on the validation and test splits. Writes benchmarks/results/evaluation_speed.json.

    nice -n 10 .venv/bin/python benchmarks/evaluation_speed.py [--repeats 3] [--batch-sizes 512 2048]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BEAUTY_DIR = REPO_ROOT.parent / "shared" / "data" / "amazon-beauty"
RESULT = REPO_ROOT / "benchmarks" / "results" / "evaluation_speed.json"


def load_sequences(beauty_dir: Path):
    """Beauty's sequences as a leave-one-out SequenceDataset (texts are not needed to time ranking)."""
    from unisem.data.dataset import sequences_from_lists

    seq_path = beauty_dir / "sequences.txt"
    if not seq_path.exists():
        raise SystemExit(f"{seq_path}: Amazon Beauty data not found (expected in ../shared/data/amazon-beauty)")
    sequences = {}
    for line in seq_path.read_text().splitlines():
        parts = line.split()
        if parts:
            sequences[parts[0]] = parts[1:]
    num_items = max(int(i) for seq in sequences.values() for i in seq)
    return sequences_from_lists(sequences, [str(i) for i in range(1, num_items + 1)], max_seq_len=50)


class TimedScorer:
    """User state from the last item, scores = state @ table.T; counts the seconds spent inside."""

    def __init__(self, num_items: int, dim: int = 72, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(num_items + 1, dim, generator=gen)
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start, cpu = time.perf_counter(), time.process_time()
        scores = self.table[x[:, -1]] @ self.table.T
        scores[:, 0] = float("-inf")
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu
        return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO_ROOT))
    from unisem.config.schema import EvaluationConfig
    from unisem.evaluate.protocols import cached_negatives, compute_ranks, protocol_negatives

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine inflates wall-clock times
    data = load_sequences(BEAUTY_DIR)
    cfg = EvaluationConfig()
    start, cpu = time.perf_counter(), time.process_time()
    protocol_negatives(data, cfg.sampled_negatives, cfg.seed)
    negatives_s, negatives_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    cached_negatives(data, cfg.sampled_negatives, cfg.seed)  # warm the cache, as every later epoch finds it
    rows = []
    for split in ("valid", "test"):
        for batch_size in args.batch_sizes:
            for protocols in (("full",), ("sampled-99",), ("full", "sampled-99")):
                runs = []
                for _ in range(args.repeats):
                    scorer = TimedScorer(data.num_items)
                    start, cpu = time.perf_counter(), time.process_time()
                    ranks = compute_ranks(scorer, data, cfg, split, max_len=50, batch_size=batch_size, protocols=protocols)
                    total = time.perf_counter() - start
                    runs.append((total, scorer.seconds, time.process_time() - cpu, scorer.cpu_seconds))
                best = min(runs)
                row = {
                    "split": split,
                    "batch_size": batch_size,
                    "protocols": list(protocols),
                    "total_s": round(best[0], 3),
                    "scoring_s": round(best[1], 3),
                    "rank_computation_s": round(best[0] - best[1], 3),
                    "total_cpu_s": round(best[2], 3),
                    "rank_computation_cpu_s": round(best[2] - best[3], 3),
                    "users": int(len(next(iter(ranks.values())))),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "benchmark": "evaluation_speed",
        "command": "nice -n 10 .venv/bin/python benchmarks/evaluation_speed.py " + shlex.join(argv or sys.argv[1:]),
        "data": {"users": data.num_users, "items": data.num_items},
        "sampled_negatives_draw_s": round(negatives_s, 3),
        "sampled_negatives_draw_cpu_s": round(negatives_cpu_s, 3),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": load_at_start,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "timing": f"best of {args.repeats} runs (wall clock); rank_computation_s = total_s - scoring_s (the "
        "stand-in scorer); total_cpu_s = process CPU time of all threads of that run, "
        "rank_computation_cpu_s = that minus the scorer's CPU time (robust to other load on the machine)",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"sampled-99 negatives drawn in {negatives_s:.2f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
