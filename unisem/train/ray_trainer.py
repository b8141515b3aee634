"""Training on Ray Train: the same ``fit`` as in-process, run by ``TorchTrainer`` workers.

``RayRuntime`` is the ``TrainRuntime`` of a Ray worker: rank and world size from the Ray context, DDP
through ``ray.train.torch.prepare_model``, users sharded by rank, a checkpoint reported every epoch (Ray
Train V2 keeps metrics only with a checkpoint) and, after a worker died, the run resuming from the last
reported checkpoint (``FailureConfig(max_failures)`` restarts the worker group).

``training.batch_size`` is the global batch: each of W workers takes ``ceil(batch_size / W)`` users per
step and DDP averages the gradients, so 1 and W workers follow nearly the same optimisation.

Failure injection (tests, drills): with ``UNISEM_FAIL_AT_EPOCH=E`` in the driver's environment, rank 0 raises
just before reporting epoch E, once: a marker file in ``out_dir`` stops it from failing again after the
restart.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from unisem.config.schema import UnisemConfig
from unisem.train.checkpoint import BEST, STATE_JSON, checkpoint_loop_state
from unisem.train.runtime import keep_catalog_buffers_local

FAIL_ENV = "UNISEM_FAIL_AT_EPOCH"
RUN_RECORD = "ray_run.json"
STORAGE_DIR = "ray"


class InjectedFailure(RuntimeError):
    """The deliberate worker failure of ``UNISEM_FAIL_AT_EPOCH``."""


class AutocastModule(nn.Module):
    """Runs the wrapped model's forward under autocast (mixed precision; the GPU path uses CUDA + bfloat16,
    which needs no loss scaling, unlike float16).

    Exposes the wrapped model as ``module`` so ``unisem.model.unwrap`` still reaches the network.
    """

    def __init__(self, module: nn.Module, device_type: str = "cuda", dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.module(*args, **kwargs)


def _injected_failure_epoch(config: dict) -> int | None:
    value = config.get("fail_at_epoch")
    return int(value) if value not in (None, "") else None


class RayRuntime:
    """``TrainRuntime`` of one Ray Train worker (see ``unisem.train.runtime``)."""

    def __init__(self, use_gpu: bool = False, fail_at_epoch: int | None = None, marker: Path | None = None,
                 resume_checkpoint: Path | None = None) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.use_gpu = use_gpu
        self.device = ray.train.torch.get_device() if use_gpu else torch.device("cpu")
        self.fail_at_epoch = fail_at_epoch
        self.marker = marker
        self.resumed_from_epoch: int | None = None
        self.resume_checkpoint = resume_checkpoint
        self._tmp_checkpoints: list[tempfile.TemporaryDirectory] = []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """DDP (for more than one worker) on the worker's device; on GPU also mixed precision (bf16)."""
        import ray.train.torch

        model = ray.train.torch.prepare_model(keep_catalog_buffers_local(model), move_to_device=self.device)
        if self.use_gpu:
            model = AutocastModule(model)
        return model

    def shard(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(indices)[self.rank :: self.world_size]

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        import ray.train

        epoch = int(metrics.get("epoch", -1))
        if self.is_main and self.fail_at_epoch is not None and epoch == self.fail_at_epoch and self.marker is not None:
            if not self.marker.exists():
                self.marker.parent.mkdir(parents=True, exist_ok=True)
                self.marker.write_text(json.dumps({"epoch": epoch, "rank": self.rank}))
                raise InjectedFailure(f"{FAIL_ENV}={epoch}: injected failure of rank 0 before reporting epoch {epoch}")
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(dict(metrics), checkpoint=checkpoint)

    def resume_from(self) -> Path | None:
        """The last reported checkpoint of this run (after a restart), as a local folder; None at first start."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None and self.resume_checkpoint is not None:
            # A new call for the same run (an Airflow retry): the last checkpoint the earlier call reported.
            checkpoint = ray.train.Checkpoint.from_directory(str(self.resume_checkpoint))
        if checkpoint is None:
            return None
        path = Path(checkpoint.path)
        if not path.is_dir():  # remote storage: bring it here
            holder = tempfile.TemporaryDirectory(prefix="unisem-resume-")
            self._tmp_checkpoints.append(holder)
            path = Path(checkpoint.to_directory(holder.name))
        loop = checkpoint_loop_state(path)
        if loop is not None:
            self.resumed_from_epoch = int(loop["epoch"])
        return path


def worker_config(cfg: UnisemConfig, num_workers: int) -> UnisemConfig:
    """The config each worker trains with: the global batch split across workers."""
    per_worker = max(1, math.ceil(cfg.training.batch_size / max(num_workers, 1)))
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, batch_size=per_worker))


def _train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """The function every Ray Train worker runs (module level, so Ray ships it by reference)."""
    from unisem.config import config_from_dict
    from unisem.data.dataset import load_features
    from unisem.text.embeddings import load_item_embeddings
    from unisem.train.loop import fit

    cfg = config_from_dict(config["cfg"])
    data = load_features(config["features_dir"])
    text = load_item_embeddings(config["embeddings_dir"]) if cfg.model.variant != "id-only" else None
    out_dir = Path(config["out_dir"])
    runtime = RayRuntime(
        use_gpu=cfg.training.use_gpu,
        fail_at_epoch=_injected_failure_epoch(config),
        marker=out_dir / f".failure-injected-at-epoch-{config.get('fail_at_epoch')}",
        resume_checkpoint=Path(config["resume_checkpoint"]) if config.get("resume_checkpoint") else None,
    )
    result = fit(cfg, data, text, out_dir, runtime, on_epoch=config.get("on_epoch"))
    return {
        "model_dir": str(result.model_dir),
        "best_epoch": int(result.best_epoch),
        "best_metrics": dict(result.best_metrics),
        "history": list(result.history),
        "resumed_from_epoch": runtime.resumed_from_epoch,
        "world_size": runtime.world_size,
    }


def ray_address(cfg: UnisemConfig) -> str | None:
    """The cluster ``ray.init`` joins: cfg.orchestration.ray_address, where ``load_config`` has applied the
    precedence (explicit > RAY_ADDRESS > config file); None means a local instance.

    A dashboard URL (``http(s)://``) is for Ray Jobs (``unisem.pipeline.cluster``), never for ``ray.init``.
    """
    address = (cfg.orchestration.ray_address or "").strip()
    if address.startswith(("http://", "https://")):
        raise ValueError(
            f"Ray address {address!r} is a dashboard URL, which is for submitting Ray Jobs (the pipeline's train "
            "stage does that); in-process training joins a cluster by its GCS address (host:6379) or starts a "
            "local Ray instance when the address is empty"
        )
    return address or None


def ensure_ray(cfg: UnisemConfig) -> bool:
    """Connect to Ray unless already connected; returns True when this call started it (and must stop it)."""
    import ray

    if ray.is_initialized() or cfg.training.num_workers == 0:  # local mode runs in this process, no Ray needed
        return False
    address = ray_address(cfg)
    if address:
        ray.init(address=address)
    else:
        t = cfg.training
        cpus = max(1, max(t.num_workers, 1) * t.cpus_per_worker)
        # GPUs are detected by Ray; too few for use_gpu workers fails the worker-group start with Ray's message.
        # A dashboard-URL RAY_ADDRESS in the environment would be picked up by ray.init itself: hide it.
        saved = os.environ.pop("RAY_ADDRESS", None)
        try:
            ray.init(num_cpus=cpus, include_dashboard=False)
        finally:
            if saved is not None:
                os.environ["RAY_ADDRESS"] = saved
    return True


def run_fingerprint(cfg_dict: dict, features_dir: Path, embeddings_dir: Path) -> str:
    """What makes two calls the same training: the worker config and the bytes of its inputs.

    The Ray run is named after it, so a retry of the same run (same inputs) finds and resumes the earlier
    call's checkpoints, while changed features or settings start a fresh run.
    """
    import hashlib

    h = hashlib.sha256(json.dumps(cfg_dict, sort_keys=True, default=str).encode())
    for root in (Path(features_dir), Path(embeddings_dir)):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                           and not p.name.endswith(".crc")):
            h.update(str(path.relative_to(root)).encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def latest_checkpoint(run_storage: Path) -> Path | None:
    """The checkpoint with the highest epoch among those Ray kept for a run (its loop state says the epoch)."""
    best: tuple[int, Path] | None = None
    if not run_storage.is_dir():
        return None
    for state in run_storage.glob(f"checkpoint_*/{STATE_JSON}"):
        try:
            epoch = int(checkpoint_loop_state(state.parent)["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a checkpoint cut short by the failure that made us retry
        if best is None or epoch > best[0]:
            best = (epoch, state.parent)
    return None if best is None else best[1]


def train_with_ray(cfg: UnisemConfig, features_dir: Path, embeddings_dir: Path, out_dir: Path,
                   on_epoch: Callable[[dict], None] | None = None):
    """Train with ``TorchTrainer`` and return ``unisem.train.TrainResult`` (model in ``out_dir/model``).

    ``training.num_workers`` workers (0 runs the training function in this process, Ray's local mode),
    ``cpus_per_worker`` CPUs and one GPU each when ``use_gpu``; ``max_failures`` restarts after a worker
    dies, resuming from the last reported checkpoint. Ray's own run folder (checkpoints, the best two by
    the early-stopping metric plus the latest) is ``out_dir/ray/``; ``out_dir/ray_run.json`` records the run.
    ``on_epoch`` (picklable: it travels to the workers) gets each epoch's record on rank 0.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from unisem.config import to_dict
    from unisem.train.loop import CHECKPOINT_DIR, MODEL_DIR, TrainResult, require_model

    t = cfg.training
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in (("features", features_dir), ("embeddings", embeddings_dir)):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: the {name} folder does not exist")
    worker_cfg = to_dict(worker_config(cfg, t.num_workers))
    # Within one call Ray restarts failed workers from the last checkpoint (FailureConfig). Across calls (an
    # Airflow retry of the same run) the run name is the fingerprint of config + inputs, so the new call
    # resumes from the checkpoints the earlier one left; runs of other inputs are dropped, not piled up.
    run_name = "train-" + run_fingerprint(worker_cfg, Path(features_dir), Path(embeddings_dir))
    storage = out_dir / STORAGE_DIR
    if storage.is_dir():
        for stale in storage.iterdir():
            if stale.name != run_name:
                shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    resume = latest_checkpoint(storage / run_name)
    started = ensure_ray(cfg)
    try:
        config = {
            "cfg": worker_cfg,
            "features_dir": str(Path(features_dir).resolve()),
            "embeddings_dir": str(Path(embeddings_dir).resolve()),
            "out_dir": str(out_dir),
            "fail_at_epoch": os.environ.get(FAIL_ENV) or None,
            "on_epoch": on_epoch,
            "resume_checkpoint": str(resume) if resume is not None else None,
        }
        metric = "valid/" + t.early_stopping_metric
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=config,
            scaling_config=ray.train.ScalingConfig(
                num_workers=t.num_workers,
                use_gpu=t.use_gpu,
                resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})},
            ),
            run_config=ray.train.RunConfig(
                name=run_name,
                storage_path=str(out_dir / STORAGE_DIR),
                failure_config=ray.train.FailureConfig(max_failures=t.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order="max"
                ),
            ),
        )
        result = trainer.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    value = result.return_value
    if value is None:
        raise RuntimeError(f"Ray training in {out_dir} finished without a result from rank 0")
    require_model(int(value["best_epoch"]), list(value["history"]), cfg, out_dir)
    model_dir = out_dir / MODEL_DIR
    if not model_dir.exists() and result.checkpoint is not None:  # workers on other machines
        with tempfile.TemporaryDirectory() as tmp:
            best = Path(result.checkpoint.to_directory(tmp)) / BEST
            if best.exists():
                shutil.copytree(best, model_dir)
    if not model_dir.exists():
        raise RuntimeError(f"Ray training in {out_dir} produced no model folder")
    record = {
        "run_name": run_name,
        "storage": str(out_dir / STORAGE_DIR / run_name),
        "num_workers": t.num_workers,
        "world_size": value["world_size"],
        "per_worker_batch_size": config["cfg"]["training"]["batch_size"],
        "resumed_from_epoch": value["resumed_from_epoch"],
        "best_epoch": value["best_epoch"],
        "best_metrics": value["best_metrics"],
        "epochs": len(value["history"]),
        "checkpoint": None if result.checkpoint is None else str(result.checkpoint.path),
        "checkpoint_dir": str(out_dir / CHECKPOINT_DIR),
    }
    from unisem.atomic import write_text_atomic

    write_text_atomic(out_dir / RUN_RECORD, json.dumps(record, indent=2, sort_keys=True))
    return TrainResult(model_dir, value["best_epoch"], value["best_metrics"], value["history"])
