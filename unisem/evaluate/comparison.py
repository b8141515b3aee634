"""Two models on the same users: every metric of both, the difference, and its paired bootstrap interval.

Input is what ``unisem.evaluate.protocols.compute_ranks`` gives for each model on one split (per-user
ranks per protocol) and the slices' user masks, so the comparison is a pure function of arrays: the page
that shows it and the promotion rule that acts on it read the same numbers.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

from unisem.evaluate.bootstrap import paired_bootstrap
from unisem.evaluate.metrics import metric_names, per_user_values


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def compare_ranks(
    challenger: Mapping[str, np.ndarray],
    champion: Mapping[str, np.ndarray],
    ks: Iterable[int],
    masks: Mapping[str, np.ndarray] | None = None,
    slice_metric: str | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"protocols": {p: {metric: {challenger, champion, delta, low, high}}}, "slices": {...}}``.

    ``challenger`` / ``champion``: protocol -> int ranks [users], the same users in the same order.
    Slices (bool [users] each) carry every metric of both models; ``slice_metric`` ("full/NDCG@10") also
    gets its interval there. JSON-ready: a slice without users has None values.
    """
    names = metric_names(ks)
    protocols: dict[str, dict[str, Any]] = {}
    for protocol in challenger:
        if protocol not in champion:
            continue
        a, b = np.asarray(challenger[protocol]), np.asarray(champion[protocol])
        if a.shape != b.shape:
            raise ValueError(f"{protocol}: the two models were ranked on different users ({a.shape} vs {b.shape})")
        protocols[protocol] = {}
        for name in names:
            iv = paired_bootstrap(per_user_values(a, name), per_user_values(b, name), resamples, level, seed)
            protocols[protocol][name] = _entry(per_user_values(a, name), per_user_values(b, name), iv)
    slices: dict[str, dict[str, Any]] = {}
    for slice_name, mask in (masks or {}).items():
        mask = np.asarray(mask, dtype=bool)
        entry: dict[str, Any] = {"users": int(mask.sum())}
        for protocol in protocols:
            a, b = np.asarray(challenger[protocol])[mask], np.asarray(champion[protocol])[mask]
            entry[protocol] = {}
            for name in names:
                va, vb = per_user_values(a, name), per_user_values(b, name)
                iv = None
                if slice_metric == f"{protocol}/{name}":
                    iv = paired_bootstrap(va, vb, resamples, level, seed)
                entry[protocol][name] = _entry(va, vb, iv)
        slices[slice_name] = entry
    return {"protocols": protocols, "slices": slices, "level": float(level), "resamples": int(resamples),
            "users": int(len(next(iter(challenger.values()), ())))}


def _entry(a: np.ndarray, b: np.ndarray, iv) -> dict[str, Any]:
    ma = float(a.mean()) if len(a) else float("nan")
    mb = float(b.mean()) if len(b) else float("nan")
    out = {"challenger": _num(ma), "champion": _num(mb), "delta": _num(ma - mb)}
    if iv is not None:
        out.update({"low": _num(iv.low), "high": _num(iv.high)})
    return out
