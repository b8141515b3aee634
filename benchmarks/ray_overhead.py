"""What Ray Train adds to a small training run on this machine: local mode vs 1 and 2 Ray workers, and the
cost of recovering from a worker failure.

Same synthetic data and tiny model as tests/test_ray_training.py (60 items, 300 users, 6 epochs), so the
training itself takes a few seconds and the rest is Ray: worker processes, the process group, per-epoch
checkpoint uploads, the restart. Writes benchmarks/results/ray_overhead.json.

    nice -n 10 .venv/bin/python benchmarks/ray_overhead.py
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "ray_overhead.json"
sys.path.insert(0, str(REPO_ROOT / "tests"))


def main() -> None:
    import ray
    import torch
    from synthetic_sequences import chain_dataset
    from safetensors.numpy import save_file
    from test_ray_training import TINY

    from unisem.config import load_config
    from unisem.data.dataset import write_features
    from unisem.train.ray_trainer import FAIL_ENV, train_with_ray

    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="unisem-bench-ray-"))
    data, text = chain_dataset(items=60, users=300, seed=0)
    write_features(data, root / "features")
    (root / "embeddings").mkdir()
    save_file({"embeddings": text}, str(root / "embeddings" / "item_embeddings.safetensors"))

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    rows = []
    for label, workers, fail in (("local mode (in-process)", 0, None), ("1 Ray worker", 1, None),
                                 ("2 Ray workers (DDP)", 2, None), ("1 Ray worker, failure at epoch 3", 1, "3")):
        if fail:
            os.environ[FAIL_ENV] = fail
        else:
            os.environ.pop(FAIL_ENV, None)
        cfg = load_config(None, TINY + [f"training.num_workers={workers}"])
        out = root / f"run-{len(rows)}"
        start = time.perf_counter()
        result = train_with_ray(cfg, root / "features", root / "embeddings", out)
        wall = time.perf_counter() - start
        record = json.loads((out / "ray_run.json").read_text())
        rows.append({
            "run": label, "num_workers": workers, "wall_s": round(wall, 2),
            "train_s": round(sum(h["train_seconds"] + h["valid_seconds"] for h in result.history), 2),
            "epochs": len(result.history), "best_valid_NDCG@10": round(result.best_metrics["NDCG@10"], 4),
            "resumed_from_epoch": record["resumed_from_epoch"],
        })
        print(rows[-1], flush=True)
    os.environ.pop(FAIL_ENV, None)
    ray.shutdown()
    out = {
        "benchmark": "ray_overhead",
        "command": "nice -n 10 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv),
        "data": {"items": 60, "users": 300, "epochs": 6},
        "ray_init_s": round(init_s, 2),
        "rows": rows,
        "load_average_1min_at_start": round(load_start, 2),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "timing": "wall_s: train_with_ray call (Ray already started); train_s: the epochs' own training + "
                  "validation seconds as fit measured them (after a restart: of the epochs in the final history)",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
