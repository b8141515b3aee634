"""An approximate inner-product index over the item table, for catalogs where exact top-K is too slow.

FAISS (``faiss-cpu``) IVF-flat with inner-product metric: the item vectors are clustered into ``nlist``
cells by k-means, and a query scans only the ``nprobe`` cells nearest to it - O(nprobe x N / nlist) dot
products instead of N. Exact chunked top-K (``unisem.model.retrieval``) stays the default; the index is for
catalogs above ``registry.index_min_items``, and its recall@10 against exact search is what to check
before trusting it (``index_recall``). Stored in FAISS's own binary format (not pickle).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from unisem.data.dataset import pad_left
from unisem.model.retrieval import chunked_top_k

# Training points per cell for the coarse k-means (FAISS warns below 39); a sample, so it stays bounded.
TRAIN_POINTS_PER_CELL = 64


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is pinned in requirements.txt
        raise RuntimeError("the approximate item index needs faiss-cpu (pinned in requirements.txt)") from exc
    return faiss


class ItemIndex:
    """Top-K item indices (1-based, as the item table) by approximate inner product."""

    def __init__(self, index, num_items: int) -> None:
        self.index, self.num_items = index, num_items

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    def search(self, states: torch.Tensor, k: int, excluded: torch.Tensor | None = None, nprobe: int = 16) -> torch.Tensor:
        """int64 [B, k] item indices; ``excluded`` [B, S] (0 = none) are skipped. A slot the probed cells
        cannot fill (tiny catalogs, large exclusions) holds 0."""
        self.index.nprobe = nprobe
        extra = 0 if excluded is None or not excluded.numel() else int((excluded > 0).sum(1).max())
        want = min(k + extra, self.num_items)
        _, found = self.index.search(np.ascontiguousarray(states.detach().cpu().numpy(), dtype=np.float32), want)
        found = torch.from_numpy(found).long() + 1  # FAISS ids are rows of table[1:]; -1 (nothing) becomes 0
        if excluded is not None and excluded.numel():
            hit = (found[:, :, None] == excluded.cpu()[:, None, :]).any(-1) | (found == 0)
        else:
            hit = found == 0
        order = torch.argsort(hit.to(torch.int8), dim=1, stable=True)  # kept results first, in score order
        out = found.gather(1, order)[:, :k]
        return torch.where(hit.gather(1, order)[:, :k], 0, out)

    def save(self, path: str | Path) -> None:
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "ItemIndex":
        index = _faiss().read_index(str(path))
        return cls(index, int(index.ntotal))


def build_index(table: torch.Tensor, nlist: int = 0, seed: int = 0) -> ItemIndex:
    """An IVF-flat inner-product index over rows 1..N of ``table``; ``nlist`` 0 = 4 x sqrt(N) cells."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(table[1:].detach().cpu().numpy(), dtype=np.float32)
    n, d = vectors.shape
    nlist = nlist or max(1, int(4 * math.sqrt(n)))
    nlist = min(nlist, n)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = min(n, nlist * TRAIN_POINTS_PER_CELL)
    rows = np.random.default_rng(seed).choice(n, size=sample, replace=False) if sample < n else np.arange(n)
    index.train(vectors[rows])
    index.add(vectors)
    item_index = ItemIndex(index, n)
    item_index.quantizer = quantizer  # the IVF index refers to it: keep it alive as long as the index
    return item_index


def index_recall(index: ItemIndex, recommender, histories: list[np.ndarray], k: int = 10, nprobe: int = 16) -> float:
    """Mean share of the exact top-``k`` (seen items excluded) that the index also returns."""
    padded = torch.as_tensor(pad_left(histories, recommender.max_len))
    seen = torch.as_tensor(pad_left(histories, max([len(h) for h in histories] + [1])))
    states = recommender.user_states(padded)
    exact, _ = chunked_top_k(states, recommender.table, k, seen)
    approx = index.search(states, k, seen, nprobe)
    both = (exact[:, :, None] == approx[:, None, :]).any(-1).sum(1)
    return float(both.float().mean() / k)
