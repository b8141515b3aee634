"""Shape of a frequency distribution, computed from its count-of-counts histogram.

The gate never brings per-item counts to the driver: Spark reduces them to ``{count: number of items with
that count}``, which has at most a few thousand entries however large the catalog, and every statistic here
(Gini, top-share, quantiles, Lorenz and long-tail curves, log2 popularity buckets) is exact from it.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np


class Histogram(NamedTuple):
    """Distinct values ascending and how many units (items, users) have each."""

    values: np.ndarray  # float64, ascending, unique
    counts: np.ndarray  # int64, same length

    @property
    def units(self) -> int:
        return int(self.counts.sum())

    @property
    def total(self) -> float:
        return float((self.values * self.counts).sum())


def histogram(count_of_counts: Mapping[float, int]) -> Histogram:
    pairs = sorted((float(v), int(c)) for v, c in count_of_counts.items() if int(c) > 0)
    return Histogram(
        np.asarray([p[0] for p in pairs], dtype=np.float64), np.asarray([p[1] for p in pairs], dtype=np.int64)
    )


def gini(h: Histogram) -> float:
    """Gini coefficient of the values over units: 0 all equal, -> 1 all on one unit.

    With units sorted ascending and ranked 1..n, G = 2 * sum(rank * x) / (n * sum x) - (n + 1) / n; a block of
    m equal values starting after rank r0 contributes x * (m * r0 + m (m + 1) / 2).
    """
    n, total = h.units, h.total
    if n == 0 or total == 0:
        return 0.0
    r0 = np.concatenate([[0], np.cumsum(h.counts)[:-1]]).astype(np.float64)
    m = h.counts.astype(np.float64)
    weighted = float((h.values * (m * r0 + m * (m + 1) / 2)).sum())
    return 2.0 * weighted / (n * total) - (n + 1.0) / n


def top_share(h: Histogram, fraction: float) -> float:
    """Share of the total held by the top ``ceil(fraction * n)`` units (at least one)."""
    n, total = h.units, h.total
    if n == 0 or total == 0:
        return 0.0
    k = max(1, math.ceil(fraction * n - 1e-9))
    taken, acc = 0, 0.0
    for v, c in zip(h.values[::-1], h.counts[::-1]):
        use = min(int(c), k - taken)
        acc += use * v
        taken += use
        if taken >= k:
            break
    return acc / total


def quantile(h: Histogram, q: float) -> float:
    """The nearest-rank quantile: the smallest value with at least ``q`` of the units at or below it."""
    if h.units == 0:
        return float("nan")
    need = max(1, math.ceil(q * h.units - 1e-9))
    idx = int(np.searchsorted(np.cumsum(h.counts), need))
    return float(h.values[min(idx, len(h.values) - 1)])


def share_below(h: Histogram, threshold: float) -> float:
    """Share of units whose value is below ``threshold``."""
    if h.units == 0:
        return 0.0
    return float(h.counts[h.values < threshold].sum()) / h.units


def lorenz_curve(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of units (ascending by value) against cumulative share of the total, from (0, 0)."""
    if h.units == 0 or h.total == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    x = np.concatenate([[0.0], np.cumsum(h.counts) / h.units])
    y = np.concatenate([[0.0], np.cumsum(h.values * h.counts) / h.total])
    return x, y


def long_tail(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Steps of value against rank (1 = most frequent), descending: the long-tail plot's corners."""
    ranks, values, start = [], [], 1
    for v, c in zip(h.values[::-1], h.counts[::-1]):
        ranks += [start, start + int(c) - 1]
        values += [v, v]
        start += int(c)
    return np.asarray(ranks, dtype=np.float64), np.asarray(values, dtype=np.float64)


def log2_bucket_shares(h: Histogram, buckets: int = 32) -> list[float]:
    """Share of units per popularity bucket: 0 for a zero value, b for values in [2^(b-1), 2^b)."""
    out = np.zeros(buckets, dtype=np.float64)
    for v, c in zip(h.values, h.counts):
        b = 0 if v <= 0 else min(buckets - 1, int(math.floor(math.log2(v))) + 1)
        out[b] += c
    return (out / out.sum()).tolist() if out.sum() else out.tolist()


def kl_divergence(p: list[float] | np.ndarray, q: list[float] | np.ndarray, eps: float = 1e-6) -> float:
    """KL(p || q) in nats, both smoothed by ``eps`` and renormalised so an empty bucket is not infinite."""
    size = max(len(p), len(q))
    a = np.zeros(size)
    b = np.zeros(size)
    a[: len(p)] = p
    b[: len(q)] = q
    a = (a + eps) / (a + eps).sum()
    b = (b + eps) / (b + eps).sum()
    return float((a * np.log(a / b)).sum())
