"""k-means under the distance a quantizer level uses, to start codebooks where the data is.

Random codebooks leave most codewords unused (every point lands on the few that happen to lie near the
data); starting from k-means centroids of the first batch gives every codeword a share from step one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def assign(x: torch.Tensor, codebook: torch.Tensor, metric: str) -> torch.Tensor:
    """Index of the chosen codeword per row: highest cosine similarity, or smallest Euclidean distance."""
    if metric == "cosine":
        return (F.normalize(x, dim=-1) @ F.normalize(codebook, dim=-1).T).argmax(dim=-1)
    if metric == "euclidean":
        # ||x||^2 is the same for every codeword of a row, so it does not change the argmin.
        return ((codebook * codebook).sum(-1)[None, :] - 2.0 * x @ codebook.T).argmin(dim=-1)
    raise ValueError(f"unknown quantizer distance {metric!r}; expected 'cosine' or 'euclidean'")


def kmeans(x: torch.Tensor, k: int, iters: int, metric: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Centroids [k, D] of ``x`` [N, D] after ``iters`` Lloyd steps with assignments by ``metric``.

    Centroids are plain means of their members for both metrics: for cosine levels the assignment uses the
    direction only, but the codeword is also subtracted from the residual, so it must keep the members'
    typical magnitude. Empty clusters are re-seeded with random points.
    """
    x = x.detach().float()
    n = x.shape[0]
    if n >= k:
        centroids = x[torch.randperm(n, generator=generator)[:k]].clone()
    else:
        picks = torch.randint(0, n, (k,), generator=generator).to(x.device)
        noise = torch.randn(k, x.shape[1], generator=generator).to(x.device) * (x.std() * 1e-2 + 1e-6)
        centroids = x[picks] + noise
    for _ in range(iters):
        idx = assign(x, centroids, metric)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        empty = int((~filled).sum())
        if empty:
            centroids[~filled] = x[torch.randint(0, n, (empty,), generator=generator)]
    return centroids
