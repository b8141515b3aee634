"""User slices for evaluation: cold-start targets and head / torso / tail targets by item popularity.

A user belongs to a slice through its target item, so a slice answers "how well do we recommend items of
this kind". Popularity is counted in the training histories only (what the model learnt from).

- **warm / cold** partition all users: **cold** when the target is one of ``data.cold_items`` (held out of
  training entirely), **warm** otherwise. They overlap the popularity slices: a cold item has no training
  interactions, so it is also a tail item.
- **head / torso / tail** partition all users. Items are ordered by training popularity (most popular
  first, ties by item index so the split is deterministic); **head** is the shortest prefix holding at least
  ``head_share`` of the interactions, **tail** the longest suffix holding at most ``tail_share`` of them (items
  never seen in training are always tail), and **torso** the rest. Cutting by rank rather than by count keeps
  the shares close to the configured ones even when many items have equal counts (5-core data).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from unisem.config.schema import EvaluationConfig
from unisem.data.dataset import SequenceDataset, split_inputs
from unisem.evaluate.metrics import metrics_from_ranks

WARM, COLD = "warm", "cold"
HEAD, TORSO, TAIL = "head", "torso", "tail"
POPULARITY_BANDS = (HEAD, TORSO, TAIL)
SLICES = (WARM, COLD, *POPULARITY_BANDS)


def item_popularity(data: SequenceDataset) -> np.ndarray:
    """int64 [N+1]: interactions per item index in the training histories (index 0, padding, is 0)."""
    if not data.num_users:
        return np.zeros(data.num_items + 1, dtype=np.int64)
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in data.histories])
    counts = np.bincount(items, minlength=data.num_items + 1)
    if len(counts) > data.num_items + 1:
        raise ValueError(f"a training history holds item index {len(counts) - 1}, beyond the {data.num_items} items")
    counts[0] = 0
    return counts


def popularity_bands(counts: np.ndarray, head_share: float, tail_share: float) -> np.ndarray:
    """Band of each item index (an array of "head" / "torso" / "tail"; index 0 is "" = padding).

    ``counts`` is int [N+1] as from ``item_popularity``.
    """
    if not (0.0 <= head_share <= 1.0 and 0.0 <= tail_share <= 1.0) or head_share + tail_share > 1.0:
        raise ValueError(
            f"evaluation.head_share ({head_share}) and evaluation.tail_share ({tail_share}) must each lie in "
            "[0, 1] and add up to at most 1"
        )
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts) - 1
    bands = np.full(n + 1, TORSO, dtype=object)
    bands[0] = ""
    c = counts[1:]
    total = float(c.sum())
    index = np.arange(1, n + 1)
    order = np.lexsort((index, -c))  # most popular first, ties by item index
    ordered = c[order]
    before = np.cumsum(ordered) - ordered
    head = before < head_share * total
    from_bottom = np.cumsum(ordered[::-1])[::-1]  # share of this item and every less popular one
    tail = (from_bottom <= tail_share * total) | (ordered == 0)
    tail &= ~head
    band = np.where(head, HEAD, np.where(tail, TAIL, TORSO))
    bands[index[order]] = band
    return bands


def slice_masks(data: SequenceDataset, cfg: EvaluationConfig, split: str = "valid") -> dict[str, np.ndarray]:
    """bool [users] per slice, by the user's target item in ``split``."""
    _, targets = split_inputs(data, split)
    targets = np.asarray(targets, dtype=np.int64)
    bands = popularity_bands(item_popularity(data), cfg.head_share, cfg.tail_share)
    target_bands = bands[targets] if len(targets) else np.zeros(0, dtype=object)
    cold = np.isin(targets, np.asarray(data.cold_items, dtype=np.int64))
    masks = {WARM: ~cold, COLD: cold}
    masks.update({b: target_bands == b for b in POPULARITY_BANDS})
    return masks


def slice_metrics(
    ranks: dict[str, np.ndarray], data: SequenceDataset, cfg: EvaluationConfig, split: str = "valid"
) -> dict[str, dict[str, Any]]:
    """``{slice: {protocol: metrics, "users": n}}``; a slice without users has NaN metrics."""
    out: dict[str, dict[str, Any]] = {}
    for name, mask in slice_masks(data, cfg, split).items():
        entry: dict[str, Any] = {p: metrics_from_ranks(r[mask], cfg.ks) for p, r in ranks.items()}
        entry["users"] = int(mask.sum())
        out[name] = entry
    return out
