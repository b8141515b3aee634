"""Unified vs id-only when the item text is weak: the demo catalog as generated, and with its titles replaced
by their category names (what a catalog of "title + a few genre words" gives the text encoder).

    .venv/bin/python benchmarks/weak_text.py [--seeds 42 43 44] [--users 3000]

For each text (``as-is``, ``categories-as-title``) and each variant (``unified``, ``id-only``) and seed, the
model trains with the demo profile's settings (configs/demo.yaml, more epochs) on the demo data's
leave-one-out split and is evaluated on the test split, full ranking. Rows go to
benchmarks/results/weak_text.json, with the mean per (text, variant) and the unified / id-only ratio, so the
claim "never worse than IDs alone when the text is weak" (unified >= id-only - 1% on weak text) is read off
the file. The text encoder is the packaged sentence model (offline).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_file import rerun_command  # noqa: E402  (benchmarks/ is the script's own folder)

RESULTS = ROOT / "benchmarks" / "results" / "weak_text.json"
TEXTS = ("as-is", "categories-as-title")
VARIANTS = ("unified", "id-only")


def demo_split(users: int, items: int, seed: int, max_len: int):
    """(catalog rows, SequenceDataset) of the demo generator, histories in time order."""
    from unisem.config import DemoConfig
    from unisem.data.dataset import sequences_from_lists
    from unisem.data.demo import generate_demo

    demo = generate_demo(DemoConfig(items=items, users=users, seed=seed))
    catalog = demo.catalog.to_pylist()
    rows = sorted(demo.interactions.to_pylist(), key=lambda r: (r["user_id"], r["timestamp"], r["position"]))
    seqs: dict[str, list[str]] = {}
    for r in rows:
        seqs.setdefault(r["user_id"], []).append(r["item_id"])
    return catalog, sequences_from_lists(seqs, [r["item_id"] for r in catalog], None, max_seq_len=max_len)


def item_texts(catalog: list[dict], text: str, template: str) -> list[str]:
    """The rendered item texts; ``categories-as-title`` puts the category names where the title was."""
    from unisem.text.template import build_item_text

    out = []
    for row in catalog:
        fields = dict(row)
        if text == "categories-as-title":
            fields["title"] = " ".join(row.get("categories") or [])
        out.append(build_item_text(fields, template))
    return out


def run_one(cfg, data, embeddings, variant: str, seed: int) -> dict:
    from unisem.config import replace_in
    from unisem.evaluate.protocols import evaluate
    from unisem.model import load_model
    from unisem.train import fit

    cfg = replace_in(cfg, model={"variant": variant}, training={"seed": seed})
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="unisem-bench-weak-text-") as out:
        result = fit(cfg, data, embeddings if variant != "id-only" else None, Path(out))
        model = load_model(result.model_dir)
        report = evaluate(model.scorer(), data, cfg.evaluation, split="test", max_len=cfg.data.max_seq_len,
                          protocols=("full",), slices=False)
    full = report.protocols["full"]
    return {"NDCG@10": round(float(full["NDCG@10"]), 4), "HR@10": round(float(full["HR@10"]), 4),
            "best_epoch": result.best_epoch, "epochs": len(result.history),
            "seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from unisem.config import load_config, replace_in
    from unisem.text.encoder import load_encoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_start = os.getloadavg()[0]
    cfg = load_config(ROOT / "configs" / "demo.yaml", args.overrides)
    cfg = replace_in(cfg, training={"max_epochs": args.max_epochs, "patience": args.patience, "show_progress": False})
    catalog, data = demo_split(args.users, args.items, cfg.data.demo.seed, cfg.data.max_seq_len)
    encoder = load_encoder(replace_in(cfg, text={"show_progress": False}).text)
    rows = []
    for text in TEXTS:
        vectors = encoder.encode(item_texts(catalog, text, cfg.text.template))
        embeddings = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])
        for variant in VARIANTS:
            for seed in args.seeds:
                row = {"text": text, "variant": variant, "seed": seed, **run_one(cfg, data, embeddings, variant, seed)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    means = {}
    for text in TEXTS:
        for variant in VARIANTS:
            values = [r["NDCG@10"] for r in rows if r["text"] == text and r["variant"] == variant]
            means.setdefault(text, {})[variant] = round(float(np.mean(values)), 4)
        means[text]["unified_over_id_only"] = round(means[text]["unified"] / max(means[text]["id-only"], 1e-12), 4)
    out = {
        "rows": rows,
        "mean_full_ndcg_at_10": means,
        "users": data.num_users, "items": data.num_items, "overrides": args.overrides,
        "cpu_count": os.cpu_count(), "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2), "python": platform.python_version(),
        "command": rerun_command("benchmarks/weak_text.py", sys.argv[1:]),
    }
    tmp = args.results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.results)
    print(json.dumps(means, indent=2))


if __name__ == "__main__":
    main()
