"""Training, evaluation and serving at catalog scale, on ``unisem data large`` output.

    .venv/bin/python benchmarks/scale.py --items 100000 --interactions 1000000
    .venv/bin/python benchmarks/scale.py --items 1000000 --interactions 10000000

One row per (items, interactions, loss), merged into benchmarks/results/scale.json and rendered as
benchmarks/results/scale.md:

- ``epoch_seconds`` / ``epoch_cpu_seconds``: one training epoch (every prefix of every user), wall and
  process CPU, the default model with ``training.loss`` (default ``auto``: sampled at these sizes), the ID
  table sparse where ``training.sparse_id_min_items`` says so (both recorded in the row);
- ``peak_rss_gb``: the benchmark process's peak resident set (data generation runs in a child process,
  the CLI, so it is not counted; everything after it is: loading, training, evaluation, serving, index;
  with ``--workers`` the Ray workers' own memory is not in it);
- ``eval_seconds``: the test split of the first 100,000 users, full ranking and sampled-99, through the
  chunked state scorer (the library's evaluation path);
- ``serve_p50_ms`` / ``serve_p99_ms``: one user per ``ServingModel.recommend`` call (top-10, seen items
  excluded), the code under the registered pyfunc model, 300 requests after 10 warm-up ones, one torch
  thread, exact search; ``serve_index_p50_ms`` / ``serve_index_p99_ms`` the same requests answered from the
  calibrated index (what a version registered with its index serves);
- ``index_recall_at_10``: the approximate inner-product index (``unisem.model.index``) against exact
  chunked top-10 for 1,000 users, its probe count calibrated (``--target-recall``) on 1,000 other users;
  ``index_query_ms``: its mean time per user in one batch of those 1,000, beside ``exact_query_ms``.

Text embeddings are a stand-in for the sentence encoder (its cost is measured in embed_beauty.json): per
item, a fixed random 384-d vector of its brand plus one of its product name plus item-specific noise,
normalised. The generated titles carry nothing more than brand, product and a serial number, so this
keeps the structure the RQ-VAE sees without hours of encoding on two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from result_file import rerun_command  # noqa: E402  (benchmarks/ is the script's own folder)

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
EVAL_USERS = 100_000
SERVE_REQUESTS, SERVE_WARMUP = 300, 10
RECALL_USERS = 1000
# Torch threads while timing single-user requests: one request is a few small ops, and a second thread on
# a busy machine mostly waits at each op's barrier; a serving process per core is the deployment this models.
SERVE_THREADS = 1
TEXT_DIM = 384


def ensure_data(data_dir: Path, items: int, interactions: int) -> Path:
    """The generated data set, made once by the CLI (a child process, so its memory is not ours)."""
    folder = data_dir / f"large-{items}-{interactions}"
    if not (folder / "demo.json").exists():
        unisem = Path(sys.executable).with_name("unisem")
        subprocess.run([str(unisem), "data", "large", "--out", str(folder), "--items", str(items),
                        "--interactions", str(interactions)], check=True)
    return folder


def load_sequences(folder: Path, max_len: int):
    """Leave-one-out sequences straight from the generated Parquet files (vectorised; no Spark)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from unisem.data.dataset import SequenceDataset

    cat = pq.read_table(folder / "catalog.parquet", columns=["item_id", "title"])
    inter = pq.read_table(folder / "interactions.parquet", columns=["user_id", "item_id", "timestamp", "position"])
    item = pc.index_in(inter["item_id"], value_set=cat["item_id"]).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    users = pc.dictionary_encode(inter["user_id"].combine_chunks())
    user = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    stamp = inter["timestamp"].combine_chunks().cast("int64").to_numpy(zero_copy_only=False)
    pos = inter["position"].to_numpy(zero_copy_only=False)
    del inter
    order = np.lexsort((pos, stamp, user))
    user, item = user[order], item[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    keep = (ends - starts) >= 3
    starts, ends = starts[keep], ends[keep]
    histories = tuple(item[max(s, e - 2 - max_len) : e - 2].copy() for s, e in zip(starts, ends))
    ids = cat["item_id"].to_pylist()
    titles = tuple(cat["title"].to_pylist())
    user_names = users.dictionary.to_pylist()
    return SequenceDataset(
        item_ids=tuple(ids), item_texts=titles, item_titles=titles,
        user_ids=tuple(user_names[u] for u in user[starts]), histories=histories,
        valid_items=item[ends - 2].copy(), test_items=item[ends - 1].copy(), cold_items=np.zeros(0, np.int64),
    )


def stand_in_text(folder: Path, dim: int = TEXT_DIM, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cat = pq.read_table(folder / "catalog.parquet", columns=["title", "brand"])
    brand = pc.dictionary_encode(cat["brand"].combine_chunks()).indices.to_numpy(zero_copy_only=False)
    product_name = pc.replace_substring_regex(cat["title"].combine_chunks(), r" No\.\d+$", "")
    product = pc.dictionary_encode(product_name).indices.to_numpy(zero_copy_only=False)
    rng = np.random.default_rng(seed)
    brand_vec = rng.normal(size=(int(brand.max()) + 1, dim)).astype(np.float32)
    product_vec = rng.normal(size=(int(product.max()) + 1, dim)).astype(np.float32)
    out = np.zeros((len(brand) + 1, dim), dtype=np.float32)
    for s in range(0, len(brand), chunk):
        e = min(s + chunk, len(brand))
        v = brand_vec[brand[s:e]] + product_vec[product[s:e]] + 0.5 * rng.normal(size=(e - s, dim)).astype(np.float32)
        out[1 + s : 1 + e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def train_on_ray(cfg, data, text: np.ndarray, out: Path, workers: int):
    """The epoch under Ray Train with ``workers`` CPU workers (one core each), from features and embeddings
    on disk as the pipeline's train stage reads them. The epoch's seconds are rank 0's; its CPU seconds are
    rank 0's process only, so the row says ``cpu_seconds_scope``."""
    from safetensors.numpy import save_file

    from unisem.config import replace_in
    from unisem.data.dataset import write_features
    from unisem.text.embeddings import EMBEDDINGS_FILE, TENSOR
    from unisem.train.ray_trainer import train_with_ray

    features, embeddings = out / "features", out / "embeddings"
    write_features(data, features)
    embeddings.mkdir(parents=True)
    save_file({TENSOR: np.ascontiguousarray(text, dtype=np.float32)}, str(embeddings / EMBEDDINGS_FILE))
    cfg = replace_in(cfg, training={"num_workers": workers, "cpus_per_worker": 1})
    return train_with_ray(cfg, features, embeddings, out / "training")


def scaled(epoch: dict, kind: str, share: float) -> float:
    """An epoch's train time with its per-batch part divided by the share of users it trained on."""
    table = epoch.get(f"table_{kind}", 0.0)
    return table + (epoch[f"train_{kind}"] - table) / share


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def measure(args) -> dict:
    """One row; the training folder (a million-item run writes gigabytes) is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="unisem-bench-scale-") as work:
        return measure_in(args, Path(work))


def measure_in(args, out: Path) -> dict:
    import torch

    from unisem.config import load_config, replace_in
    from unisem.data.dataset import pad_left, split_inputs
    from unisem.evaluate.protocols import evaluate
    from unisem.model import load_model
    from unisem.model.index import build_index, calibrate, index_recall
    from unisem.model.inference_by_id import ServingModel
    from unisem.model.retrieval import chunked_top_k
    from unisem.train import fit

    load_start = os.getloadavg()[0]
    folder = ensure_data(Path(args.data_dir), args.items, args.interactions)
    cfg = load_config(overrides=args.set)
    cfg = replace_in(cfg, training={"loss": args.loss, "max_epochs": 1, "show_progress": False})
    data, load_s, _ = timed(lambda: load_sequences(folder, cfg.data.max_seq_len))
    text = stand_in_text(folder)
    train_data, share = data, 1.0
    if args.train_users and args.train_users < data.num_users:
        # A seeded sample of users, the whole catalog: a step costs what it costs in the full epoch (the
        # catalog-sized parts - ID table, item sampler, text - are all there), the epoch has fewer of them.
        train_data, share = data.sample_users(args.train_users, seed=1), args.train_users / data.num_users
    if args.workers:
        result = train_on_ray(cfg, train_data, text, out, args.workers)
    else:
        result = fit(cfg, train_data, text, out)
    epoch = result.history[0]
    del text
    model = load_model(result.model_dir)

    sub = data.users(np.arange(min(EVAL_USERS, data.num_users)))
    report, eval_s, eval_cpu = timed(lambda: evaluate(model.scorer(), sub, cfg.evaluation, split="test",
                                                     max_len=cfg.data.max_seq_len, slices=False))

    serving = ServingModel(model)
    rng = np.random.default_rng(0)
    picks = rng.choice(data.num_users, size=SERVE_REQUESTS + SERVE_WARMUP, replace=False)
    inputs, _ = split_inputs(data, "test")

    def request_latencies() -> list[float]:
        """Milliseconds of each single-user request after the warm-up ones, on SERVE_THREADS threads."""
        out = []
        threads = torch.get_num_threads()
        torch.set_num_threads(SERVE_THREADS)
        for n, u in enumerate(picks):
            history = [data.item_ids[i - 1] for i in inputs[u]]
            start = time.perf_counter()
            serving.recommend([history], k=10)
            if n >= SERVE_WARMUP:
                out.append((time.perf_counter() - start) * 1000)
        torch.set_num_threads(threads)
        return out

    latencies = request_latencies()

    index, index_s, _ = timed(lambda: build_index(model.table, nlist=args.nlist, seed=0))
    users = rng.permutation(data.num_users)
    calib_users, recall_users = users[:RECALL_USERS], users[RECALL_USERS : 2 * RECALL_USERS]
    if args.nprobe:
        index.nprobe = args.nprobe
    else:
        calibrate(index, model, [inputs[u] for u in calib_users], target_recall=args.target_recall)
    recall = index_recall(index, model, [inputs[u] for u in recall_users], k=10)
    histories = [inputs[u] for u in recall_users]
    padded = torch.as_tensor(pad_left(histories, model.max_len))
    seen = torch.as_tensor(pad_left(histories, max(len(h) for h in histories)))
    with torch.no_grad():
        states = model.user_states(padded)
    _, exact_s, _ = timed(lambda: chunked_top_k(states, model.table, 10, seen))
    _, approx_s, _ = timed(lambda: index.search(states, 10, seen))
    serving.use_index(index)  # what a version registered with its index serves from
    index_latencies = request_latencies()
    return {
        "items": args.items,
        "interactions": args.interactions,
        "users": data.num_users,
        "loss": cfg.training.loss_for(data.num_items),
        "sparse_ids": cfg.training.sparse_ids_for(data.num_items),
        "in_batch_negatives": cfg.training.in_batch_negatives,
        # The catalog-wide part (codebook init) once, the per-batch part scaled by users.
        "epoch_seconds": round(scaled(epoch, "seconds", share), 1),
        "epoch_cpu_seconds": round(scaled(epoch, "cpu_seconds", share), 1),
        # When trained on a user sample: what was measured, and the epoch figures are it scaled by users.
        "epoch_measured": None if share == 1.0 else {
            "users": train_data.num_users, "seconds": round(epoch["train_seconds"], 1),
            "cpu_seconds": round(epoch["train_cpu_seconds"], 1),
            "table_seconds": round(epoch.get("table_seconds", 0.0), 1),
            "table_cpu_seconds": round(epoch.get("table_cpu_seconds", 0.0), 1)},
        "valid_seconds": round(epoch["valid_seconds"], 1),
        "ray_workers": args.workers,
        "cpu_seconds_scope": "rank 0 process" if args.workers else "process",
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "eval_users": sub.num_users,
        "eval_seconds": round(eval_s, 1),
        "eval_cpu_seconds": round(eval_cpu, 1),
        "test_full_ndcg_at_10": round(report.metric("full/NDCG@10"), 4),
        "serve_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "serve_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "serve_threads": SERVE_THREADS,
        "serve_index_p50_ms": round(float(np.percentile(index_latencies, 50)), 2),
        "serve_index_p99_ms": round(float(np.percentile(index_latencies, 99)), 2),
        "index": {"kind": "faiss IVF-flat, inner product reduced to L2", "nlist": index.nlist, "nprobe": index.nprobe,
                  "target_recall": None if args.nprobe else args.target_recall,
                  "build_seconds": round(index_s, 1), "recall_users": len(recall_users)},
        "index_recall_at_10": round(recall, 4),
        "index_query_ms": round(approx_s * 1000 / len(recall_users), 3),
        "exact_query_ms": round(exact_s * 1000 / len(recall_users), 3),
        "load_seconds": round(load_s, 1),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": rerun_command("benchmarks/scale.py", sys.argv[1:]),
    }


def _trained_on(row: dict) -> str:
    measured = row.get("epoch_measured")
    return f"{measured['users']:,} (scaled)" if measured else "all"


def write_results(row: dict, results: Path = RESULTS) -> None:
    table = results.with_suffix(".md")
    rows = json.loads(results.read_text()) if results.exists() else []
    key = lambda r: (r["items"], r["interactions"], r["loss"], r.get("ray_workers", 0))  # noqa: E731
    rows = sorted([r for r in rows if key(r) != key(row)] + [row], key=key)
    tmp = results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2) + "\n")
    tmp.replace(results)
    lines = [
        "# Scale: training, evaluation and serving on generated catalogs (2 shared CPU cores)",
        "",
        "Written by `benchmarks/scale.py`; each row's command is in scale.json. Epoch = one pass over every",
        "prefix of every user; evaluation = test split of the first 100k users, full + sampled-99; serving =",
        "one user per request; 'scaled': the epoch trained on a user sample, its time scaled by users (the",
        "measured part is in scale.json); recall = approximate index (IVF, nprobe of nlist cells in scale.json,",
        "calibrated on other users) vs exact chunked top-10; query ms = per user in a batch of 1,000, index vs exact.",
        "",
        "| items | interactions | loss | sparse IDs | Ray workers | epoch trained on users | epoch s | epoch CPU s | peak RSS GB | eval users | eval s | serve p50 / p99 ms, exact | serve p50 / p99 ms, index | index recall@10 | index / exact query ms | load avg |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['interactions']:,} | {r['loss']} | {'yes' if r.get('sparse_ids') else 'no'} | {r.get('ray_workers', 0)} | {_trained_on(r)} | {r['epoch_seconds']} | {r['epoch_cpu_seconds']} | "
            f"{r['peak_rss_gb']} | {r['eval_users']:,} | {r['eval_seconds']} | {r['serve_p50_ms']} / {r['serve_p99_ms']} | {r.get('serve_index_p50_ms', '-')} / {r.get('serve_index_p99_ms', '-')} | "
            f"{r['index_recall_at_10']} | {r.get('index_query_ms', '-')} / {r.get('exact_query_ms', '-')} | {r['load_average_1min_at_start']}-{r['load_average_1min_at_end']} |"
        )
    table.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--loss", default="auto", choices=("auto", "sampled", "ce", "bce"),
                        help="training.loss (auto: the product's rule by catalog size; the row records the loss used)")
    parser.add_argument("--train-users", type=int, default=0,
                        help="train the epoch on a seeded sample of this many users and scale its time by users "
                             "(0: every user); evaluation and serving still see every user")
    parser.add_argument("--results", type=Path, default=RESULTS, help="rows file (the table is written beside it)")
    parser.add_argument("--workers", type=int, default=0,
                        help="train under Ray Train with this many CPU workers (0: in this process)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as the CLI's --set (e.g. training.valid_users=10000)")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "unisem-scale-data"))
    parser.add_argument("--nlist", type=int, default=0, help="index cells (0: 4 x sqrt(items))")
    parser.add_argument("--nprobe", type=int, default=0, help="index cells probed (0: calibrated to --target-recall)")
    parser.add_argument("--target-recall", type=float, default=0.9)
    args = parser.parse_args()
    row = measure(args)
    write_results(row, args.results)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
