"""Deterministic seeding and a thread count that respects the environment."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads() -> int:
    """Use the CPUs this process may run on unless OMP_NUM_THREADS (which torch already honours) says otherwise.

    torch defaults to the machine's physical core count, which oversubscribes a container limited to fewer.
    """
    if not os.environ.get("OMP_NUM_THREADS"):
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            n = os.cpu_count() or 1
        torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
