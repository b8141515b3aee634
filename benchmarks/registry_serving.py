"""What the MLflow registry costs on Amazon Beauty (22,363 users x 12,101 items), with the default model size.

Times: logging + registering a model (MLflow run, pyfunc "from code", sha256 manifest), loading it from
``models:/unisem@challenger`` (artifact copy, manifest check, safetensors load, item table), ``predict`` for
1 and for 512 users (top-10, seen items excluded), and ``promote_if_better`` with a champion present (both
models re-evaluated on the full-ranking test split). The network is the default architecture with random
weights and random (seeded) 384-d text embeddings: none of these costs depends on the values, and training
a Beauty model on this 2-core machine would take far longer than the things measured. Writes
benchmarks/results/registry_serving.json.

    nice -n 10 .venv/bin/python benchmarks/registry_serving.py
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "registry_serving.json"


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - start, 3), round(time.process_time() - cpu, 3)


def main() -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import pandas as pd
    import torch
    from beauty_data import random_text_home

    from unisem.data.dataset import split_inputs
    from unisem.home import RunLayout
    from unisem.model import build_network, save_model
    from unisem.registry.promotion import promote_if_better
    from unisem.registry.registration import log_and_register
    from unisem.registry.pyfunc_model import load_serving
    from unisem.train import TrainResult

    load_start = os.getloadavg()[0]
    home, cfg, data, text, features, embeddings = random_text_home("unisem-bench-registry-")

    rows = {}
    versions = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_network(cfg, data.num_items, text, data.cold_items).eval()
        model_dir = home / f"model-{seed}"
        save_model(net, cfg, data.item_ids, data.item_titles, model_dir)
        layout = RunLayout.for_run(f"bench-{seed}", home)
        result = TrainResult(model_dir, 1, {"NDCG@10": 0.0}, [{"epoch": 1, "loss": 1.0}])
        reg, wall, cpu = timed(lambda: log_and_register(cfg, result, layout.root.name, record_dir=layout.registry,
                                                        features_dir=features, embeddings_dir=embeddings))
        versions.append(reg.version)
        rows.setdefault("register_s", []).append(wall)
        rows.setdefault("register_cpu_s", []).append(cpu)
        decision, wall, cpu = timed(lambda: promote_if_better(cfg, features, embeddings, record_dir=layout.registry))
        rows.setdefault("promote_s", []).append(wall)
        rows.setdefault("promote_cpu_s", []).append(cpu)
        rows.setdefault("promote_evaluations", []).append(1 if decision.champion_value is None else 2)
    model_bytes = sum(p.stat().st_size for p in (home / "model-0").rglob("*") if p.is_file())

    pyfunc, load_wall, load_cpu = timed(lambda: load_serving("models:/unisem@challenger"))
    inputs, _ = split_inputs(data, "test")
    histories = [[data.item_ids[i - 1] for i in h] for h in inputs[:512]]
    frame1 = pd.DataFrame({"history": histories[:1]})
    frame512 = pd.DataFrame({"history": histories})
    pyfunc.predict(None, frame1)  # warm-up
    lat1 = min(timed(lambda: pyfunc.predict(None, frame1, {"k": 10}))[1] for _ in range(5))
    lat512 = min(timed(lambda: pyfunc.predict(None, frame512, {"k": 10}))[1] for _ in range(3))

    out = {
        "benchmark": "registry_serving",
        "command": "nice -n 10 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv),
        "data": {"users": data.num_users, "items": data.num_items},
        "model": {"variant": cfg.model.variant, "levels": cfg.quantizer.levels, "codebook_size": cfg.quantizer.codebook_size,
                  "artifact_bytes": model_bytes},
        "register_s": rows["register_s"],
        "register_cpu_s": rows["register_cpu_s"],
        "promote_s": rows["promote_s"],
        "promote_cpu_s": rows["promote_cpu_s"],
        "promote_evaluations": rows["promote_evaluations"],
        "load_from_registry_s": load_wall,
        "load_from_registry_cpu_s": load_cpu,
        "predict_1_user_s": lat1,
        "predict_512_users_s": lat512,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": round(load_start, 2),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "timing": "wall clock of one call (predict: best of 5 / 3); *_cpu_s = CPU time of this process (MLflow's own "
                  "subprocesses not included); promote with 2 evaluations = challenger and champion re-evaluated",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
