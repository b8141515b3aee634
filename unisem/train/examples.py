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
from unisem.model.losses import Pool


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


def training_negatives(
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


class PoolSampler(NamedTuple):
    """What the sampled softmax draws its pool from: per item index [N+1], the share of training targets
    (the rate at which in-batch targets enter the pool) and the draw probability of the extra negatives."""

    target_share: torch.Tensor  # float64 [N+1]
    draw_probs: torch.Tensor  # float64 [N+1], 0 for padding and cold items
    warm_items: torch.Tensor  # int64, the items with draw_probs > 0 (uniform draws index this)
    uniform: bool


def pool_sampler(targets: np.ndarray, num_items: int, cold_items: np.ndarray, distribution: str) -> PoolSampler:
    """The sampling rates of a training set's pool: target counts over every position of ``targets``.

    Popularity draws use the target counts plus one (an item seen only in validation still gets drawn);
    cold items and padding are never drawn, so they are never classes.
    """
    if distribution not in ("uniform", "popularity"):
        raise ValueError(f"training.negative_sampling: unknown value {distribution!r}; expected uniform or popularity")
    counts = np.bincount(targets[targets > 0].ravel(), minlength=num_items + 1).astype(np.float64)
    counts[0] = 0.0
    share = counts / max(counts.sum(), 1.0)
    warm = np.ones(num_items + 1, dtype=bool)
    warm[0] = False
    warm[np.asarray(cold_items, dtype=np.int64)] = False
    weight = np.where(warm, 1.0 if distribution == "uniform" else counts + 1.0, 0.0)
    draw = weight / weight.sum()
    return PoolSampler(torch.from_numpy(share), torch.from_numpy(draw), torch.from_numpy(np.flatnonzero(warm)), distribution == "uniform")


def draw_pool(
    targets: torch.Tensor, num_negatives: int, sampler: PoolSampler, generator: torch.Generator, in_batch: int = 0
) -> Pool:
    """The step's pool: the batch's targets (a uniform sample of ``in_batch`` of its positions when it has
    more; 0 = all) and ``num_negatives`` draws, with the log expected counts ``S * target_share + K * draw_prob``
    for S sampled positions.

    The expected count is the rate logQ corrects for: an item enters the pool as a sampled position's target
    about ``S * share`` times and as a draw ``K * p`` times per step. Sampling positions (not unique items)
    keeps in-batch negatives what they are, draws from the target distribution, only fewer of them: the
    softmax costs positions x pool, so without the cap a batch of long histories (12,800 positions) pays
    12,800 x 12,800 logits.
    """
    mask = targets > 0
    real = targets[mask]
    if in_batch and len(real) > in_batch:
        real = real[torch.randperm(len(real), generator=generator)[:in_batch]]
    if sampler.uniform:
        draws = sampler.warm_items[torch.randint(0, len(sampler.warm_items), (num_negatives,), generator=generator)]
    else:
        draws = torch.multinomial(sampler.draw_probs, num_negatives, replacement=True, generator=generator)
    pool = torch.unique(torch.cat([real, draws]))

    def log_rate(items: torch.Tensor) -> torch.Tensor:
        return (len(real) * sampler.target_share[items] + num_negatives * sampler.draw_probs[items]).log().float()

    target_log_q = torch.zeros(targets.shape, dtype=torch.float32)
    target_log_q[mask] = log_rate(targets[mask])
    return Pool(pool, log_rate(pool), target_log_q)
