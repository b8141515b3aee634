"""Residual quantization with the distance chosen per level (cosine for coarse levels, Euclidean for the last).

What a cosine level subtracts from the residual is the chosen codeword itself (the raw vector, with its
learned length), not the codeword rescaled to the residual's projection and not its unit-normalised form:

- the semantic vector ``z`` must be a function of the semantic ID alone (``z = sum of chosen codewords``);
  subtracting the residual's own projection would pass an unquantised length through the bottleneck, so two
  items with the same code tuple would get different ``z`` and the codes would no longer describe the item;
- a unit-normalised codeword ignores the scale of the residual (the encoder output can be much longer or
  shorter than 1), leaving the next level a residual dominated by that length error instead of by detail.

Cosine chooses the direction (spreading coarse levels over all codewords regardless of length), while the
codeword's length is learned as the mean of the residuals that chose it (EMA or gradient), so the
subtraction removes the right amount. The last level of "hybrid" then picks by Euclidean distance on what
is left, which separates near-identical items.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from unisem.quantize.kmeans import assign, kmeans


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # [N, D] sum of the chosen codewords, straight-through to the input
    codes: torch.Tensor  # int64 [N, L]
    commit_loss: torch.Tensor  # scalar, summed over levels
    residual_norms: torch.Tensor  # [L] mean L2 norm of the residual entering each level (detached)


def level_distances(distance: str, levels: int) -> tuple[str, ...]:
    """The metric of each level: hybrid = cosine for 1..L-1 and Euclidean for the last."""
    if distance == "hybrid":
        return ("cosine",) * (levels - 1) + ("euclidean",)
    if distance in ("cosine", "euclidean"):
        return (distance,) * levels
    raise ValueError(f"quantizer.distance: unknown value {distance!r}; expected hybrid, cosine or euclidean")


class ResidualQuantizer(nn.Module):
    """L codebooks of K codewords; level l quantizes what levels < l left over.

    Codebooks start from k-means of the first training batch (all catalog items here), are updated by EMA
    (decay ``ema_decay``) or by gradient (codebook loss), and a codeword whose EMA count falls below
    ``dead_code_threshold`` is moved onto a random residual of the current batch.
    """

    def __init__(
        self,
        dim: int,
        levels: int = 3,
        codebook_size: int = 256,
        distance: str = "hybrid",
        update: str = "ema",
        ema_decay: float = 0.8,
        commitment_beta: float = 0.25,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        dead_code_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if update not in ("ema", "gradient"):
            raise ValueError(f"quantizer.codebook_update: unknown value {update!r}; expected ema or gradient")
        self.dim, self.levels, self.codebook_size = dim, levels, codebook_size
        self.metrics = level_distances(distance, levels)
        self.update, self.decay, self.beta = update, ema_decay, commitment_beta
        self.kmeans_init, self.kmeans_iters, self.dead_threshold = kmeans_init, kmeans_iters, dead_code_threshold
        init = torch.randn(levels, codebook_size, dim) * dim**-0.5
        if update == "gradient":
            self.codebooks = nn.Parameter(init)
        else:
            self.register_buffer("codebooks", init)
        self.register_buffer("cluster_size", torch.zeros(levels, codebook_size))
        self.register_buffer("embed_sum", torch.zeros(levels, codebook_size, dim))
        # 1.0 once a level's codebook has been set from data; a buffer so a loaded model is not re-initialised.
        self.register_buffer("initialized", torch.zeros(levels))

    @torch.no_grad()
    def _init_level(self, level: int, residual: torch.Tensor) -> None:
        centroids = kmeans(residual, self.codebook_size, self.kmeans_iters, self.metrics[level])
        counts = torch.bincount(assign(residual, centroids, self.metrics[level]), minlength=self.codebook_size)
        self.codebooks.data[level] = centroids
        self.cluster_size[level] = counts.float()
        self.embed_sum[level] = centroids * counts.float()[:, None]
        self.initialized[level] = 1.0

    @torch.no_grad()
    def _ema_update(self, level: int, residual: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.codebook_size).float()
        sums = torch.zeros(self.codebook_size, self.dim, dtype=residual.dtype, device=residual.device)
        sums.index_add_(0, idx, residual)
        self.cluster_size[level].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum[level].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        size = self.cluster_size[level]
        live = size > 1e-5
        self.codebooks.data[level][live] = self.embed_sum[level][live] / size[live, None]

    @torch.no_grad()
    def _replace_dead(self, level: int, residual: torch.Tensor) -> None:
        dead = self.cluster_size[level] < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or residual.shape[0] == 0:
            return
        picks = residual[torch.randint(0, residual.shape[0], (n_dead,), device=residual.device)]
        self.codebooks.data[level][dead] = picks
        self.cluster_size[level][dead] = self.dead_threshold
        self.embed_sum[level][dead] = picks * self.dead_threshold

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        residual = x
        quantized = torch.zeros_like(x)
        codes, norms = [], []
        commit = x.new_zeros(())
        for level, metric in enumerate(self.metrics):
            if self.training and self.kmeans_init and not bool(self.initialized[level]):
                self._init_level(level, residual.detach())
            codebook = self.codebooks[level]
            idx = assign(residual.detach(), codebook.detach(), metric)
            chosen = codebook[idx]
            commit = commit + self.beta * F.mse_loss(residual, chosen.detach())
            if self.update == "gradient":
                commit = commit + F.mse_loss(chosen, residual.detach())
            elif self.training:
                self._ema_update(level, residual.detach(), idx)
            if self.training and self.dead_threshold > 0:
                self._replace_dead(level, residual.detach())
            norms.append(residual.detach().norm(dim=-1).mean())
            codes.append(idx)
            quantized = quantized + chosen.detach()
            residual = residual - chosen.detach()
        # Straight-through: the value is the sum of codewords, the gradient flows to the encoder output.
        out = x + (quantized - x).detach()
        return QuantizerOutput(out, torch.stack(codes, dim=1), commit, torch.stack(norms))

    @torch.no_grad()
    def codes_of(self, x: torch.Tensor) -> torch.Tensor:
        """Semantic IDs [N, L] of encoder outputs, without touching the codebooks."""
        residual, codes = x, []
        for level, metric in enumerate(self.metrics):
            idx = assign(residual, self.codebooks[level], metric)
            codes.append(idx)
            residual = residual - self.codebooks[level][idx]
        return torch.stack(codes, dim=1)
