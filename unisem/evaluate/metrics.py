"""Ranking metrics from the 0-based rank of each user's single target item (rank 0 = ranked first).

Every protocol reduces to one integer per user - how many candidates were put above the target - so the
metrics are pure functions of that array and are tested against hand-computed values. With one relevant
item per user, HR@K equals Recall@K and the ideal DCG is 1, so NDCG@K is simply 1/log2(rank + 2) when the
target is in the top K.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def _as_ranks(ranks: np.ndarray) -> np.ndarray:
    arr = np.asarray(ranks)
    if arr.ndim != 1:
        raise ValueError(f"ranks must be a 1-d array (one rank per user), got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.number) or np.any(arr < 0)):
        raise ValueError("ranks must be non-negative numbers (0 = the target was ranked first)")
    return arr.astype(np.float64)


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"K must be a positive integer, got {k!r}")
    return int(k)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of users whose target is in the top ``k`` (HR@K, = Recall@K with one target)."""
    r, k = _as_ranks(ranks), _check_k(k)
    return float(np.mean(r < k)) if r.size else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@K with one relevant item: 1/log2(rank + 2) inside the top ``k``, else 0."""
    r, k = _as_ranks(ranks), _check_k(k)
    if not r.size:
        return float("nan")
    gains = np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the whole list (no cut-off): mean of 1/(rank + 1)."""
    r = _as_ranks(ranks)
    return float(np.mean(1.0 / (r + 1.0))) if r.size else float("nan")


def metric_names(ks: Iterable[int]) -> tuple[str, ...]:
    """The keys ``metrics_from_ranks`` returns, in its order."""
    ks = sorted({_check_k(k) for k in ks})
    return tuple([f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks] + ["MRR"])


def metrics_from_ranks(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """``{"HR@K": ..., "NDCG@K": ... for each K, "MRR": ...}``; an empty ``ranks`` gives NaN everywhere.

    NaN rather than 0 for no users, because "no users" is not "the model missed every target".
    """
    r = _as_ranks(ranks)
    ks = sorted({_check_k(k) for k in ks})
    out: dict[str, float] = {f"HR@{k}": hit_rate(r, k) for k in ks}
    out.update({f"NDCG@{k}": ndcg(r, k) for k in ks})
    out["MRR"] = mrr(r)
    return out


def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """float64 [users]: each user's own value of ``metric`` ("HR@K", "NDCG@K" or "MRR"), whose mean is the
    metric; what a paired comparison of two models on the same users resamples."""
    r = _as_ranks(ranks)
    name, _, k = metric.partition("@")
    if name == "MRR" and not k:
        return 1.0 / (r + 1.0)
    if name in ("HR", "NDCG") and k.isdigit():
        k = _check_k(int(k))
        if name == "HR":
            return (r < k).astype(np.float64)
        return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}: use HR@K, NDCG@K or MRR")
