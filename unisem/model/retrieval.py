"""Full ranking and top-K over the catalog in chunks of items: memory bounded by users x chunk, not x N.

A million-item catalog gives a [512, 1M] float score matrix (2 GB) per batch of users if scored at once.
These functions walk the item table in chunks and keep only a running top-K (values and indices) or a
running count of items scoring at least the target (the rank), so the result is the unchunked one: the
same comparisons, counted in pieces. Ties follow the protocols' rule (pessimistic: a candidate equal to the
target counts above it). Column 0 (padding) is never a result.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

# Items per chunk: a [512 users x 65,536] float block is 128 MB.
DEFAULT_CHUNK_ITEMS = 65536


class StateScorer(NamedTuple):
    """A model that scores as user state x item vector, so ranking can walk the items in chunks.

    ``states(histories [B, L] left-padded) -> [B, d]``; ``table`` [N+1, d] (row 0 padding).
    """

    states: Callable[[torch.Tensor], torch.Tensor]
    table: torch.Tensor
    chunk_items: int = DEFAULT_CHUNK_ITEMS


def _chunk_mask(excluded: torch.Tensor | None, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, columns within the chunk) of excluded items [B, S] (0 = none) that fall in [start, stop)."""
    if excluded is None or not excluded.numel():
        return None
    inside = (excluded >= start) & (excluded < stop) & (excluded > 0)
    rows = inside.nonzero()[:, 0]
    return rows, excluded[inside] - start


def chunked_top_k(
    states: torch.Tensor, table: torch.Tensor, k: int, excluded: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK_ITEMS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` (indices [B, k], scores [B, k]) of ``states @ table.T``, never column 0 nor ``excluded``.

    ``excluded`` int64 [B, S] item indices per user (0 = padding). When fewer than ``k`` items are left,
    the tail holds -inf scores (as ``torch.topk`` over the full matrix would).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    n = table.shape[0]
    k = min(k, n - 1)
    b = states.shape[0]
    best_v = states.new_full((b, 0), float("-inf"))
    best_i = torch.zeros((b, 0), dtype=torch.long, device=states.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        scores = states @ table[start:stop].T
        if start == 0:
            scores[:, 0] = float("-inf")
        mask = _chunk_mask(excluded, start, stop)
        if mask is not None:
            scores[mask] = float("-inf")
        top = scores.topk(min(k, stop - start), dim=1)
        values = torch.cat([best_v, top.values], dim=1)
        indices = torch.cat([best_i, top.indices + start], dim=1)
        keep = values.topk(min(k, values.shape[1]), dim=1)
        best_v, best_i = keep.values, indices.gather(1, keep.indices)
    return best_i, best_v


def chunked_full_ranks(
    states: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK_ITEMS
) -> torch.Tensor:
    """0-based full-ranking rank [B] of each target: how many items score at least its score, padding,
    ``seen`` [B, S] (0 = padding) and the target itself excluded; NaN handled as ``full_ranks`` does.

    The target's score is the row dot product; the chunk scores are matrix products, which may differ from
    it in the last bit, so an exact tie between the target and another item may count either way - the same
    ambiguity the unchunked matrix has between its own entries.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    n = table.shape[0]
    target_scores = (states * table[targets]).sum(-1, keepdim=True)
    nan_target = torch.isnan(target_scores[:, 0])
    rank = torch.zeros(states.shape[0], dtype=torch.int64, device=states.device)
    rows = torch.arange(states.shape[0], device=states.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        above = (states @ table[start:stop].T) >= target_scores
        if bool(nan_target.any()):
            above[nan_target] = True
        if start == 0:
            above[:, 0] = False
        mask = _chunk_mask(seen, start, stop)
        if mask is not None:
            above[mask] = False
        inside = (targets >= start) & (targets < stop)
        above[rows[inside], targets[inside] - start] = False
        rank += above.sum(dim=1)
    return rank
