"""CPU seconds of one Amazon Beauty training epoch per loss (ce, sampled, bce), the default model otherwise.

    .venv/bin/python benchmarks/beauty_epoch_cpu.py [--losses ce sampled bce]

The cost of an epoch does not depend on the text embeddings' values, so seeded random 384-d embeddings
stand in for MiniLM (no encoding pass). Each loss trains one epoch through ``fit`` on the 22,363 Beauty
users; the figure is the training part's process CPU seconds (``train_cpu_seconds``, validation excluded),
set beside the authors' code at their paper configuration (260 CPU-s per epoch on this machine, measured
outside this repository: their code is not part of it). Writes benchmarks/results/beauty_epoch_cpu.json.
Quality is not measured here: one epoch of random-text training says nothing about it.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "beauty_epoch_cpu.json"
AUTHORS_CPU_S = 260


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--losses", nargs="+", default=["ce", "sampled", "bce"], choices=("ce", "sampled", "bce"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import torch
    from beauty_data import load_beauty

    from unisem.config import load_config, replace_in
    from unisem.train import fit

    load_start = os.getloadavg()[0]
    base = load_config()
    data = load_beauty(max_seq_len=base.data.max_seq_len)
    text = np.random.default_rng(0).normal(size=(data.num_items + 1, 384)).astype(np.float32)
    text[0] = 0
    rows = {}
    for loss in args.losses:
        cfg = replace_in(base, training={"loss": loss, "max_epochs": 1, "show_progress": False})
        record = fit(cfg, data, text, Path(tempfile.mkdtemp(prefix=f"unisem-bench-epoch-{loss}-"))).history[0]
        rows[loss] = {"train_cpu_seconds": round(record["train_cpu_seconds"], 1),
                      "train_seconds": round(record["train_seconds"], 1),
                      "authors_over_this": round(AUTHORS_CPU_S / record["train_cpu_seconds"], 1)}
        print(loss, rows[loss], flush=True)
    out = {
        "benchmark": "beauty_epoch_cpu",
        "command": ".venv/bin/python benchmarks/beauty_epoch_cpu.py " + shlex.join(sys.argv[1:]),
        "data": {"users": data.num_users, "items": data.num_items},
        "model": {"variant": base.model.variant, "id_dim": base.model.id_dim,
                  "num_negatives": base.training.num_negatives, "negative_sampling": base.training.negative_sampling},
        "losses": rows,
        "authors_cpu_seconds_per_epoch": AUTHORS_CPU_S,
        "text_embeddings": "seeded random 384-d (cost-equivalent stand-in for MiniLM)",
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
    }
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULT)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
