"""Training examples: every prefix of each user's history (SASRec), and uniform negatives for BCE.

A user's training sequence ``s`` (the items before the held-out validation and test items) gives
``inputs = s[:-1]`` and ``targets = s[1:]``: position t predicts the next item from everything up to t.
Cold items never occur here (histories exclude them), and are never sampled as negatives.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from unisem.data.dataset import SequenceDataset, pad_left


class TrainingArrays(NamedTuple):
    inputs: np.ndarray  # int64 [U, max_len], left-padded
    targets: np.ndarray  # int64 [U, max_len], aligned with inputs, 0 = no target
    seen: np.ndarray  # int64 [U, H] each user's whole training history, left-padded (negatives avoid these)
    users: np.ndarray  # user indices with at least one target


def training_arrays(data: SequenceDataset, max_len: int) -> TrainingArrays:
    hist = list(data.histories)
    inputs = pad_left([h[:-1] for h in hist], max_len)
    targets = pad_left([h[1:] for h in hist], max_len)
    width = max([len(h) for h in hist] + [1])
    seen = pad_left(hist, width)
    users = np.flatnonzero(np.array([len(h) >= 2 for h in hist], dtype=bool))
    return TrainingArrays(inputs, targets, seen, users)


def trim_padding(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop the leading columns that are padding in every row (exact: positions count from the right)."""
    nonzero = (arrays[0] != 0).any(axis=0)
    start = int(np.argmax(nonzero)) if nonzero.any() else arrays[0].shape[1] - 1
    return tuple(a[:, start:] for a in arrays)


def sample_negatives(
    seen: torch.Tensor, shape: tuple[int, int], warm_items: torch.Tensor, generator: torch.Generator, max_rounds: int = 100
) -> torch.Tensor:
    """Uniform negatives [B, T] from ``warm_items``, none of them in the row's ``seen`` items [B, H].

    Draws are redrawn where they hit the user's own items; after ``max_rounds`` (only reachable when a user
    has seen nearly the whole catalog) the remaining hits are left and masked by the caller's targets.
    """
    draw = lambda n: warm_items[torch.randint(0, len(warm_items), (n,), generator=generator)]  # noqa: E731
    neg = draw(shape[0] * shape[1]).view(shape)
    for _ in range(max_rounds):
        hit = (neg[:, :, None] == seen[:, None, :]).any(-1)
        n_hit = int(hit.sum())
        if n_hit == 0:
            break
        neg[hit] = draw(n_hit)
    return neg


def length_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, buckets: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of users with similar history lengths, in random order; every user exactly once.

    The shuffled users are cut into pools of ``buckets * batch_size``, each pool sorted by length and cut
    into batches, and the batches shuffled: a batch is then about as wide as its users' histories, not as
    the longest history in the catalog, which on short-history data (Beauty: mean 9) skips most padding.
    """
    pool = batch_size * buckets
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
