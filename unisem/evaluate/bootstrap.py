"""Paired bootstrap of the difference between two models measured on the same users.

Promotion compares two models on one test set, so the noise that matters is which users happened to be in
it. Resampling users (with replacement) and keeping each user's pair of values together gives the spread of
the mean difference that a different draw of users would have produced, without assuming normality; pairing
removes the between-user variance both models share, which is most of it. Pure numpy, seeded: the same
arrays, seed and resample count give the same interval on any machine.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Users per block of resamples: bounds the [block, users] index matrix to ~64 MB of int64.
_BLOCK_CELLS = 1 << 23


class Interval(NamedTuple):
    """Mean of ``a - b`` and its two-sided percentile interval at ``level``."""

    mean: float
    low: float
    high: float
    level: float
    resamples: int
    users: int

    def to_dict(self) -> dict[str, float | int]:
        return self._asdict()


def paired_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 ``a - b`` for two per-user arrays of the same users (same length, same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired values must be two 1-d arrays of the same users, got shapes {a.shape} and {b.shape}")
    return a - b


def bootstrap_means(diff: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """float64 [resamples]: the mean of ``diff`` over ``resamples`` resamples of its users with replacement."""
    diff = np.asarray(diff, dtype=np.float64)
    if resamples < 1:
        raise ValueError(f"the number of bootstrap resamples must be at least 1, got {resamples}")
    n = len(diff)
    if n == 0:
        return np.full(resamples, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = diff[idx].mean(axis=1)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> Interval:
    """Percentile interval of ``mean(a - b)`` at ``level`` from ``resamples`` paired resamples of the users.

    No users gives NaN everywhere: "no evidence", which the promotion rule treats as not clearing any margin.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"the bootstrap level must lie strictly between 0 and 1, got {level}")
    diff = paired_differences(a, b)
    if not len(diff):
        return Interval(float("nan"), float("nan"), float("nan"), float(level), int(resamples), 0)
    means = bootstrap_means(diff, resamples, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(diff.mean()), float(low), float(high), float(level), int(resamples), len(diff))
