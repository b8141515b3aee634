"""Encode the 12,101 Amazon Beauty item texts with the packaged MiniLM: cold (empty cache), then cached.

Usage: python benchmarks/embed_beauty.py [--beauty ../shared/data/amazon-beauty] [--out benchmarks/results/embed_beauty.json]

The cold pass is what a new catalog costs; the cached pass is what every nightly run costs when the catalog
did not change (hash every text, read the cache shards, assemble). Model loading is timed on its own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beauty", default=str(REPO.parent / "shared" / "data" / "amazon-beauty"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "embed_beauty.json"))
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from unisem.config.schema import TextConfig
    from unisem.data.importers.sequence_file import read_items
    from unisem.text.cache import EmbeddingCache, embed_texts
    from unisem.text.encoder import default_threads, load_encoder

    items_path = Path(args.beauty) / "items.jsonl"
    if not items_path.exists():
        print(f"skipped: {items_path} not found (the Beauty data lives in ../shared beside the repository)")
        return 0
    texts = [t or "" for t in read_items(items_path)["text"].to_pylist()]

    text_cfg = TextConfig(batch_size=args.batch_size, show_progress=False)
    start = time.perf_counter()
    encoder = load_encoder(text_cfg)
    encoder.model  # the model loads lazily; load it here so the cold pass times encoding only
    load_seconds = time.perf_counter() - start

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as cache_dir:
        start, cpu_start = time.perf_counter(), time.process_time()
        cold, cold_stats = embed_texts(texts, encoder, EmbeddingCache(cache_dir, encoder.identity, encoder.dim))
        cold_seconds = time.perf_counter() - start
        # CPU seconds of this process (all threads): what the encoding costs, whatever else the machine runs.
        cold_cpu_seconds = time.process_time() - cpu_start
        load_after = os.getloadavg()[0]
        start = time.perf_counter()
        cached, cached_stats = embed_texts(texts, encoder, EmbeddingCache(cache_dir, encoder.identity, encoder.dim))
        cached_seconds = time.perf_counter() - start
    assert cached_stats.encoded == 0 and (cached == cold).all()

    result = {
        "texts": len(texts),
        "unique_texts": cold_stats.unique,
        "model": encoder.identity,
        "dim": encoder.dim,
        "batch_size": args.batch_size,
        "torch_threads": default_threads(),
        "load_seconds": round(load_seconds, 2),
        "cold_seconds": round(cold_seconds, 2),
        "cold_texts_per_s": round(len(texts) / cold_seconds, 1),
        "cold_cpu_seconds": round(cold_cpu_seconds, 1),
        "cold_texts_per_cpu_s": round(len(texts) / cold_cpu_seconds, 1),
        "cached_seconds": round(cached_seconds, 3),
        "cached_texts_per_s": round(len(texts) / cached_seconds, 1),
        "machine": "2-core CPU",
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "note": "shared machine (see load_average_1min: before/after the cold pass on 2 cores): wall-clock "
        "figures are upper bounds; cold_cpu_seconds is the encoding's own CPU cost",
        "command": "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
