"""Top-10 for every Amazon Beauty user through the registered model, against a floor of the bare maths.

    .venv/bin/python benchmarks/serving_speed.py

The model (default architecture, random weights, seeded random 384-d text embeddings: the costs do not
depend on the values) is registered with MLflow and loaded back as ``models:/unisem@challenger``; its
``predict`` gets every user's test-split history as item ids, in frames of 2,048 users, top-10 with seen
items excluded. The floor is what any implementation must do, on the same network and item table: the
user states at trimmed length (users sorted by history length, batches of 256 cut to their longest
history, only the last position through the last block), one matmul against the table, seen items masked,
top-10. Same torch threads for both; the two are interleaved, ``--repeats`` times, and the CPU seconds of
this process compared by their minimum. For reference, the padded forward (every user at 50 positions, as
inference ran before) is timed once with the same matmul and top-10. Writes
benchmarks/results/serving_speed.json.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT = REPO_ROOT / "benchmarks" / "results" / "serving_speed.json"
FRAME_USERS = 2048
STATE_BATCH = 256


def cpu_timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import pandas as pd
    import torch
    from beauty_data import random_text_home

    from unisem.data.dataset import pad_left, split_inputs
    from unisem.home import RunLayout
    from unisem.model import build_network, save_model
    from unisem.registry.pyfunc_model import load_serving
    from unisem.registry.registration import log_and_register
    from unisem.train import TrainResult

    load_start = os.getloadavg()[0]
    home, cfg, data, text, features, embeddings = random_text_home("unisem-bench-serving-")
    torch.manual_seed(0)
    net = build_network(cfg, data.num_items, text, data.cold_items).eval()
    model_dir = home / "model"
    save_model(net, cfg, data.item_ids, data.item_titles, model_dir)
    layout = RunLayout.for_run("bench-serving", home)
    log_and_register(cfg, TrainResult(model_dir, 1, {"NDCG@10": 0.0}, [{"epoch": 1, "loss": 1.0}]),
                     layout.root.name, record_dir=layout.registry, features_dir=features, embeddings_dir=embeddings)
    pyfunc = load_serving("models:/unisem@challenger")

    inputs, _ = split_inputs(data, "test")
    frames = [pd.DataFrame({"history": [[data.item_ids[i - 1] for i in h] for h in inputs[s : s + FRAME_USERS]]})
              for s in range(0, len(inputs), FRAME_USERS)]
    rec = pyfunc.serving.recommender
    network, table = rec.network, rec.table
    lengths = np.array([min(len(h), cfg.data.max_seq_len) for h in inputs])
    order = np.argsort(lengths, kind="stable")

    def through_registry():
        return [pyfunc.predict(None, frame, {"k": 10}) for frame in frames]

    @torch.no_grad()
    def floor():
        out = []
        for s in range(0, len(order), STATE_BATCH):
            users = order[s : s + STATE_BATCH]
            batch = [inputs[u] for u in users]
            hist = torch.from_numpy(pad_left(batch, int(lengths[users].max())))
            states = network.user_states(hist, table)
            scores = states @ table.T
            scores[:, 0] = float("-inf")
            scores.scatter_(1, torch.from_numpy(pad_left(batch, max(len(h) for h in batch))), float("-inf"))
            out.append(scores.topk(10, dim=1).indices)
        return out

    @torch.no_grad()
    def padded():
        out = []
        for s in range(0, len(inputs), STATE_BATCH):
            batch = inputs[s : s + STATE_BATCH]
            hist = torch.from_numpy(pad_left(batch, cfg.data.max_seq_len))
            states = network.states(hist, table)[:, -1]
            scores = states @ table.T
            scores[:, 0] = float("-inf")
            scores.scatter_(1, torch.from_numpy(pad_left(batch, max(len(h) for h in batch))), float("-inf"))
            out.append(scores.topk(10, dim=1).indices)
        return out

    through_registry()  # warm-up (first-call allocations, lazy imports)
    floor()
    runs = {"unisem": [], "floor": []}
    for _ in range(args.repeats):
        for name, fn in (("unisem", through_registry), ("floor", floor)):
            _, wall, cpu = cpu_timed(fn)
            runs[name].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)})
    _, padded_wall, padded_cpu = cpu_timed(padded)

    unisem_cpu = min(r["cpu_s"] for r in runs["unisem"])
    floor_cpu = min(r["cpu_s"] for r in runs["floor"])
    out = {
        "benchmark": "serving_speed",
        "command": " ".join([".venv/bin/python benchmarks/serving_speed.py", *map(shlex.quote, sys.argv[1:])]),
        "data": {"users": data.num_users, "items": data.num_items, "mean_history": round(float(lengths.mean()), 2)},
        "unisem_cpu_s": unisem_cpu,
        "floor_cpu_s": floor_cpu,
        "ratio": round(unisem_cpu / floor_cpu, 2),
        "goal_ratio": 2.0,
        "runs": runs,
        "padded_forward_floor_cpu_s": round(padded_cpu, 3),
        "padded_forward_floor_wall_s": round(padded_wall, 3),
        "definition": "unisem: UnisemPyfunc.predict of models:/unisem@challenger (load_serving), every user's test history as ids, "
                      f"frames of {FRAME_USERS}, k=10, seen excluded. floor: trimmed-length user states (length-sorted "
                      f"batches of {STATE_BATCH}, last position only) + matmul + seen mask + topk on the same network "
                      "and table. padded_forward_floor: the same with every user at max_seq_len positions. "
                      "cpu_s = process CPU seconds, min over interleaved repeats.",
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULT)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
