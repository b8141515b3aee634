"""``fit``: the per-worker training function, the same in-process and on Ray Train workers.

Each epoch trains on this worker's users (all prefixes of each history), then validates by full ranking on
the "valid" split. Every worker validates the whole (synchronised) model, so all of them reach the same
early-stopping decision without exchanging messages; only the main worker writes files.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from unisem.config import replace_in
from unisem.data.contract import InputError
from unisem.data.dataset import SequenceDataset
from unisem.model.losses import Pool
from unisem.model.network import build_network, unwrap
from unisem.model.recommender import Recommender
from unisem.model.storage import save_model
from unisem.progress import say
from unisem.train.checkpoint import BEST, load_checkpoint, save_checkpoint
from unisem.train.examples import draw_pool, length_batches, pool_sampler, training_arrays, training_negatives, trim_padding
from unisem.train.optimizer import TrainingOptimizer
from unisem.train.progress import epoch_line
from unisem.train.runtime import LocalRuntime, TrainRuntime
from unisem.train.seeding import configure_threads, seed_everything

CHECKPOINT_DIR, MODEL_DIR = "checkpoint", "model"


class TrainResult(NamedTuple):
    model_dir: Path
    best_epoch: int
    best_metrics: dict
    history: list[dict]


class NoModelError(InputError):
    """Training ran but no epoch produced a model (no epoch ran, or the validation metric was never a number)."""


def require_model(best_epoch: int, history: list[dict], cfg, out_dir: Path, users: int | None = None) -> None:
    """Raise ``NoModelError`` unless an epoch was kept: a run without a model must not look like a success.

    Checked by the callers of ``fit`` (not inside it), so Ray Train does not restart workers for a failure
    that no restart can fix.
    """
    if best_epoch >= 1:
        return
    t = cfg.training
    metric = f"valid/{t.early_stopping_metric}"
    if not history:
        why = f"no epoch ran (training.max_epochs={t.max_epochs}, training.patience={t.patience})"
    else:
        values = ", ".join(f"{h.get(metric)}" for h in history[:5])
        who = f" ({users} users in the features)" if users is not None else ""
        why = (f"{metric} was not a number in all {len(history)} epochs ({values}): no user to validate on{who}")
    raise NoModelError(f"{out_dir}: training produced no model: {why}; no model was written")


def validation_users(data: SequenceDataset, limit: int, seed: int) -> SequenceDataset:
    """The users every epoch validates on: all of them up to ``limit`` (0 = no limit), else one seeded sample
    (sorted, so the same users in the same order each epoch and the curve compares like with like)."""
    return data.sample_users(limit, seed)


def validation_metrics(rec: Recommender, cfg, data: SequenceDataset) -> dict[str, float]:
    """Full-ranking metrics on the validation split (B2's protocol), without slices, for speed; ``data`` is
    already the validation users (``validation_users``)."""
    from unisem.evaluate.protocols import evaluate

    report = evaluate(rec.scorer(), data, cfg.evaluation, split="valid", max_len=cfg.data.max_seq_len, protocols=("full",), slices=False)
    return dict(report.protocols["full"])


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device copy of a batch; on CUDA through pinned memory and asynchronous (the GPU path)."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def fit(cfg, data: SequenceDataset, text_embeddings: np.ndarray | None, out_dir: Path, runtime: TrainRuntime | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train until early stopping; the main worker prints one line per epoch and hands each epoch's record to
    ``on_epoch`` (e.g. live MLflow metrics) as soon as it is known."""
    runtime = runtime or LocalRuntime()
    out_dir = Path(out_dir)
    # training.loss=auto decided once, here: the network, the loop and the saved model's config all see it
    cfg = replace_in(cfg, training={"loss": cfg.training.loss_for(data.num_items)})
    t = cfg.training
    configure_threads()
    seed_everything(t.seed)  # the same on every worker: identical initial weights
    network = build_network(cfg, data.num_items, text_embeddings, data.cold_items)
    model = runtime.prepare_model(network)
    net = unwrap(model)
    device = runtime.device
    # Fused Adam: one kernel over all parameters instead of several passes per tensor (the ID table is most
    # of them); lazy Adam for an ID table with sparse gradients (training.sparse_id_min_items).
    opt = TrainingOptimizer(model, t.lr, t.weight_decay, device)
    sampler = torch.Generator().manual_seed(t.seed * 1009 + runtime.rank)

    arrays = training_arrays(data, cfg.data.max_seq_len)
    users = runtime.shard(arrays.users)
    lengths = (arrays.targets > 0).sum(axis=1)
    warm = torch.as_tensor(np.setdiff1d(np.arange(1, data.num_items + 1), data.cold_items), dtype=torch.long)
    pools = pool_sampler(arrays.targets, data.num_items, data.cold_items, t.negative_sampling) if t.loss == "sampled" else None
    metric = t.early_stopping_metric
    loop = {"epoch": 0, "best_epoch": -1, "best_value": -math.inf, "best_metrics": {}, "bad_epochs": 0, "history": []}
    model_dir, ckpt_dir = out_dir / MODEL_DIR, out_dir / CHECKPOINT_DIR
    valid_data = validation_users(data, t.valid_users, t.seed)

    resume = runtime.resume_from()
    if resume is not None:
        loop = load_checkpoint(Path(resume), net, opt, sampler)
        if runtime.is_main and (Path(resume) / BEST).exists() and Path(resume) / BEST != model_dir:
            if not model_dir.exists():
                shutil.copytree(Path(resume) / BEST, model_dir)

    from tqdm.auto import tqdm

    while loop["epoch"] < t.max_epochs and loop["bad_epochs"] < t.patience:
        epoch = loop["epoch"]
        model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        rng = np.random.default_rng(t.seed + 7919 * epoch + runtime.rank)
        batches = length_batches(rng.permutation(users), lengths, t.batch_size, t.length_buckets, rng)
        if t.item_table == "batch" and t.loss == "sampled":
            net.items.initialize_codebooks(torch.Generator().manual_seed(t.seed))  # the step tables need no cached codes
        elif t.item_table == "batch":
            net.items.refresh_codes()
        # Catalog-wide work before the first batch (codebook k-means, code refresh): once per epoch whatever
        # the users, so a timing scaled from a sample of users must not scale it.
        table_seconds, table_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        sums = np.zeros(4)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}", leave=False, disable=not (t.show_progress and runtime.is_main))
        for rows in bar:
            inp, tgt = trim_padding(arrays.inputs[rows], arrays.targets[rows])
            inputs, targets = torch.from_numpy(inp), torch.from_numpy(tgt)
            negatives = None
            extra = {}
            if t.loss == "bce":
                negatives = training_negatives(torch.from_numpy(arrays.seen[rows]), tuple(inputs.shape), warm, sampler).to(device)
            elif pools is not None:
                pool = draw_pool(targets, t.num_negatives, pools, sampler, t.in_batch_negatives)
                extra = {"pool": Pool(*(to_device(x, device) for x in pool)), "seen": to_device(torch.from_numpy(arrays.seen[rows]), device)}
            loss = model(to_device(inputs, device), to_device(targets, device), negatives, **extra)
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            opt.step()
            sums += [float(v.detach()) for v in loss]
            bar.set_postfix(loss=f"{float(loss.total.detach()):.4f}")
        train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

        start = time.perf_counter()
        model.eval()
        rec = Recommender(net, cfg, data.item_ids, data.item_titles)  # the epoch's item table, computed once
        valid = validation_metrics(rec, cfg, valid_data)
        valid_seconds = time.perf_counter() - start
        if metric not in valid:
            raise ValueError(f"training.early_stopping_metric: {metric!r} is not a validation metric; have {sorted(valid)}")
        n = max(len(batches), 1)
        record = {
            "epoch": epoch + 1,
            "loss": float(sums[0] / n),
            "rec_loss": float(sums[1] / n),
            "commit_loss": float(sums[2] / n),
            "recon_loss": float(sums[3] / n),
            "train_seconds": train_seconds,
            "train_cpu_seconds": train_cpu_seconds,
            "table_seconds": table_seconds,  # part of train_seconds
            "table_cpu_seconds": table_cpu_seconds,
            "valid_seconds": valid_seconds,
            # process CPU time (all threads): on a shared machine wall time says more about the neighbours
            "cpu_seconds": time.process_time() - cpu_start,
            **{f"valid/{k}": float(v) for k, v in valid.items()},
        }
        improved = valid[metric] > loop["best_value"]
        if improved:
            loop.update(best_epoch=epoch + 1, best_value=float(valid[metric]), best_metrics={k: float(v) for k, v in valid.items()}, bad_epochs=0)
            if runtime.is_main:
                save_model(net, cfg, data.item_ids, data.item_titles, model_dir, semantic_ids=rec.semantic_ids)
        else:
            loop["bad_epochs"] += 1
        loop["history"].append(record)
        loop["epoch"] = epoch + 1
        checkpoint = None
        if runtime.is_main:
            say(__name__, epoch_line(record, t.max_epochs, metric, improved))
            if on_epoch is not None:
                on_epoch(dict(record))
            checkpoint = save_checkpoint(ckpt_dir, net, opt, loop, sampler, model_dir if model_dir.exists() else None)
        runtime.report(record, checkpoint)

    return TrainResult(model_dir, int(loop["best_epoch"]), dict(loop["best_metrics"]), list(loop["history"]))
