"""An approximate inner-product index over the item table, for catalogs where exact top-K is too slow.

FAISS (``faiss-cpu``) IVF-flat over the item vectors after the standard reduction of maximum inner product
to nearest neighbour (Bachrach et al., 2014): each item gets one more coordinate, sqrt(M^2 - |x|^2) for the
largest item norm M, and each query a 0 there, so |q - x|^2 = |q|^2 + M^2 - 2 q.x and the L2 order is the
inner-product order exactly. Clustering the raw vectors and probing cells by inner product with their
centroids instead (IVF with METRIC_INNER_PRODUCT) favours cells whose centroid is long, not those near the
query (trained unisem item vectors have nearly equal norms, so centroid norms say little about the
query's nearest items). A query scans the ``nprobe`` cells nearest to it - O(nprobe x N / nlist) dot products instead of
N. Exact chunked top-K (``unisem.model.retrieval``) stays the default; ``calibrate`` picks the fewest probes
that keep a target share of the exact top-10 on real user states, and ``index_recall`` reports it. Stored in
FAISS's own binary format (not pickle) with its probe count in a JSON file beside it.
"""
from __future__ import annotations

import json
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


def _augmented(vectors: np.ndarray, top_norm: float) -> np.ndarray:
    """Rows with the extra coordinate sqrt(M^2 - |x|^2) that makes L2 order the inner-product order."""
    extra = np.sqrt(np.maximum(top_norm**2 - np.einsum("ij,ij->i", vectors, vectors), 0.0))
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)


class ItemIndex:
    """Top-K item indices (1-based, as the item table) by approximate inner product."""

    def __init__(self, index, num_items: int, nprobe: int = 16, calibrated_recall: float | None = None) -> None:
        self.index, self.num_items, self.nprobe = index, num_items, nprobe
        self.calibrated_recall = calibrated_recall  # what ``calibrate`` reached with ``nprobe``

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    def search(self, states: torch.Tensor, k: int, excluded: torch.Tensor | None = None, nprobe: int | None = None) -> torch.Tensor:
        """int64 [B, k] item indices; ``excluded`` [B, S] (0 = none) are skipped. A slot the probed cells
        cannot fill (tiny catalogs, large exclusions) holds 0. ``nprobe`` defaults to the calibrated one."""
        self.index.nprobe = min(int(nprobe or self.nprobe), self.nlist)
        extra = 0 if excluded is None or not excluded.numel() else int((excluded > 0).sum(1).max())
        want = min(k + extra, self.num_items)
        queries = np.ascontiguousarray(states.detach().cpu().numpy(), dtype=np.float32)
        queries = np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)])
        _, found = self.index.search(queries, want)
        found = torch.from_numpy(found).long() + 1  # FAISS ids are rows of table[1:]; -1 (nothing) becomes 0
        if excluded is not None and excluded.numel():
            hit = (found[:, :, None] == excluded.cpu()[:, None, :]).any(-1) | (found == 0)
        else:
            hit = found == 0
        order = torch.argsort(hit.to(torch.int8), dim=1, stable=True)  # kept results first, in score order
        out = found.gather(1, order)[:, :k]
        return torch.where(hit.gather(1, order)[:, :k], 0, out)

    def save(self, path: str | Path) -> None:
        """The FAISS index at ``path`` and its probe count at ``path`` + ``.json``."""
        _faiss().write_index(self.index, str(path))
        Path(f"{path}.json").write_text(json.dumps({"nprobe": self.nprobe, "nlist": self.nlist, "items": self.num_items,
                                                    "calibrated_recall_at_10": self.calibrated_recall}))

    @classmethod
    def load(cls, path: str | Path) -> "ItemIndex":
        index = _faiss().read_index(str(path))
        meta_file = Path(f"{path}.json")
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        return cls(index, int(index.ntotal), int(meta.get("nprobe", 16)), meta.get("calibrated_recall_at_10"))


def build_index(table: torch.Tensor, nlist: int = 0, seed: int = 0, nprobe: int = 16) -> ItemIndex:
    """An IVF-flat index over rows 1..N of ``table`` (reduced to L2, see the module docstring); ``nlist`` 0 =
    4 x sqrt(N) cells, k-means trained on a seeded sample of TRAIN_POINTS_PER_CELL rows a cell."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(table[1:].detach().cpu().numpy(), dtype=np.float32)
    n, d = vectors.shape
    nlist = nlist or max(1, int(4 * math.sqrt(n)))
    nlist = min(nlist, n)
    top_norm = float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors).max())) if n else 0.0
    quantizer = faiss.IndexFlatL2(d + 1)
    index = faiss.IndexIVFFlat(quantizer, d + 1, nlist, faiss.METRIC_L2)
    sample = min(n, nlist * TRAIN_POINTS_PER_CELL)
    rows = np.random.default_rng(seed).choice(n, size=sample, replace=False) if sample < n else np.arange(n)
    rows.sort()
    index.train(_augmented(vectors[rows], top_norm))
    for start in range(0, n, 1 << 16):  # the augmented copy in chunks: never a second full table in memory
        index.add(_augmented(vectors[start : start + (1 << 16)], top_norm))
    item_index = ItemIndex(index, n, nprobe)
    item_index.quantizer = quantizer  # the IVF index refers to it: keep it alive as long as the index
    return item_index


def calibrate(index: ItemIndex, recommender, histories: list[np.ndarray], target_recall: float = 0.9, k: int = 10) -> float:
    """Set ``index.nprobe`` to the fewest probes (doubling from 1) whose recall@``k`` against exact search on
    these users reaches ``target_recall`` (all cells, i.e. exact, at worst); returns the recall reached."""
    states, exact, seen = _exact_top_k(recommender, histories, k)
    nprobe = 1
    while True:
        recall = _overlap(exact, index.search(states, k, seen, nprobe), k)
        if recall >= target_recall or nprobe >= index.nlist:
            index.nprobe, index.calibrated_recall = min(nprobe, index.nlist), recall
            return recall
        nprobe *= 2


def _exact_top_k(recommender, histories: list[np.ndarray], k: int):
    padded = torch.as_tensor(pad_left(histories, recommender.max_len))
    seen = torch.as_tensor(pad_left(histories, max([len(h) for h in histories] + [1])))
    with torch.no_grad():
        states = recommender.user_states(padded)
        exact, _ = chunked_top_k(states, recommender.table, k, seen)
    return states, exact, seen


def _overlap(exact: torch.Tensor, approx: torch.Tensor, k: int) -> float:
    both = (exact[:, :, None] == approx[:, None, :]).any(-1).sum(1)
    return float(both.float().mean() / k)


def index_recall(index: ItemIndex, recommender, histories: list[np.ndarray], k: int = 10, nprobe: int | None = None) -> float:
    """Mean share of the exact top-``k`` (seen items excluded) that the index also returns."""
    states, exact, seen = _exact_top_k(recommender, histories, k)
    return _overlap(exact, index.search(states, k, seen, nprobe), k)
