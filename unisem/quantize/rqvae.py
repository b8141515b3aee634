"""The RQ-VAE: encoder MLP -> residual quantizer -> decoder MLP reconstructing the text embedding."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unisem.quantize.residual import ResidualQuantizer


class RQVAEOutput(NamedTuple):
    z: torch.Tensor  # [N, code_dim] semantic vectors (sum of codewords; straight-through)
    codes: torch.Tensor  # int64 [N, L] semantic IDs
    commit_loss: torch.Tensor  # scalar, summed over levels
    residual_norms: torch.Tensor  # [L]


def mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, text_dim: int, hidden: Sequence[int], code_dim: int, quantizer: ResidualQuantizer) -> None:
        super().__init__()
        self.encoder = mlp([text_dim, *hidden, code_dim])
        self.decoder = mlp([code_dim, *reversed(tuple(hidden)), text_dim])
        self.quantizer = quantizer

    def forward(self, x: torch.Tensor) -> RQVAEOutput:
        q = self.quantizer(self.encoder(x))
        return RQVAEOutput(q.quantized, q.codes, q.commit_loss, q.residual_norms)

    def reconstruction_loss(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Squared error of decoding ``z`` back to ``x``; callers pass real items only, never padding rows."""
        if z.shape[0] == 0:
            return z.new_zeros(())
        return F.mse_loss(self.decoder(z), x)

    @classmethod
    def from_config(cls, text_dim: int, q) -> "RQVAE":
        """Built from a ``QuantizerConfig``."""
        return cls(
            text_dim,
            q.encoder_hidden,
            q.code_dim,
            ResidualQuantizer(
                q.code_dim,
                levels=q.levels,
                codebook_size=q.codebook_size,
                distance=q.distance,
                update=q.codebook_update,
                ema_decay=q.ema_decay,
                commitment_beta=q.commitment_beta,
                kmeans_init=q.kmeans_init,
                kmeans_iters=q.kmeans_iters,
                dead_code_threshold=q.dead_code_threshold,
            ),
        )
