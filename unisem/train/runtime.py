"""Where a training function runs: its rank, device, how it wraps the model and reports each epoch.

``fit`` only talks to this interface, so the same function runs in-process (``LocalRuntime``) and on Ray
Train workers (a runtime that wraps the model in DDP, shards users by rank and reports to Ray).
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class TrainRuntime(Protocol):
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool: ...

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move to the device and wrap for distributed training if any; ``unwrap`` undoes the wrapping."""
        ...

    def shard(self, indices: np.ndarray) -> np.ndarray:
        """The user indices this worker trains on."""
        ...

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        """Called once per epoch on every worker, after the checkpoint (main worker only) was written."""
        ...

    def resume_from(self) -> Path | None:
        """A checkpoint folder written by an earlier attempt, or None to start fresh."""
        ...


def keep_catalog_buffers_local(model: nn.Module) -> nn.Module:
    """Mark the network's catalog buffers (``UnisemNetwork.catalog_buffers``) for a DDP wrapper to leave
    alone; call before wrapping. DDP otherwise broadcasts every buffer from rank 0 at every forward."""
    from torch.nn.parallel import DistributedDataParallel

    names = model.catalog_buffers() if hasattr(model, "catalog_buffers") else []
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return model


class LocalRuntime:
    """Rank 0 of 1 in this process; keeps the reported metrics; resumes from ``resume`` if given."""

    def __init__(self, device: str | torch.device = "cpu", resume: Path | None = None) -> None:
        self.rank, self.world_size = 0, 1
        self.device = torch.device(device)
        self.reports: list[dict] = []
        self._resume = Path(resume) if resume else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def shard(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(indices)[self.rank :: self.world_size]

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        self.reports.append({**metrics, "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None})

    def resume_from(self) -> Path | None:
        return self._resume if self._resume and self._resume.exists() else None
