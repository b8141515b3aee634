"""Small synthetic leave-one-out datasets and scorers shared by the evaluation tests."""
from __future__ import annotations

import numpy as np
import torch

from unisem.data.dataset import SequenceDataset


def make_dataset(items: list[list[int]], num_items: int, cold: tuple[int, ...] = ()) -> SequenceDataset:
    """Users from full chronological item-index sequences (the last two are valid and test)."""
    return SequenceDataset(
        item_ids=tuple(f"i{i}" for i in range(1, num_items + 1)),
        item_texts=tuple(f"text {i}" for i in range(1, num_items + 1)),
        item_titles=tuple(f"title {i}" for i in range(1, num_items + 1)),
        user_ids=tuple(f"u{u}" for u in range(len(items))),
        histories=tuple(np.asarray(s[:-2], dtype=np.int64) for s in items),
        valid_items=np.asarray([s[-2] for s in items], dtype=np.int64),
        test_items=np.asarray([s[-1] for s in items], dtype=np.int64),
        cold_items=np.asarray(cold, dtype=np.int64),
    )


def cyclic_dataset(num_users: int = 400, num_items: int = 300, seed: int = 0) -> SequenceDataset:
    """Every user walks the catalog in steps of one: the next item is always last + 1 (mod N)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(num_users):
        start, length = int(rng.integers(num_items)), int(rng.integers(3, 12))
        seqs.append([(start + j) % num_items + 1 for j in range(length)])
    return make_dataset(seqs, num_items)


def next_item_scorer(num_items: int):
    """A perfect scorer for ``cyclic_dataset``: all mass on last + 1."""

    def score(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], num_items + 1))
        nxt = x[:, -1] % num_items + 1
        out[torch.arange(x.shape[0]), nxt] = 1.0
        return out

    return score
