"""The SASRec backbone: a causal Transformer over left-padded item vectors with learned positions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# Resolution of the CPU dropout's threshold: one 16-bit random draw per element, so the drop rate is
# ``p`` rounded to a multiple of 2**-16 (and the kept values are scaled by the rate actually used).
_DROPOUT_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """Inverted-dropout multipliers: 0 with probability ``p``, else ``1 / (1 - p)``.

    Drawn as raw 64-bit random words read as four 16-bit draws each: a quarter of the generator calls
    of ``rand_like``, whose float conversion dominated dropout on CPU.
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # full 64-bit range
    draws = words.view(torch.int16)[:n].view(shape)
    dropped = round(p * _DROPOUT_LEVELS)
    return (draws >= dropped - _DROPOUT_LEVELS // 2).to(dtype) * (_DROPOUT_LEVELS / (_DROPOUT_LEVELS - dropped))


class Dropout(nn.Module):
    """Inverted dropout whose CPU mask is ``keep_mask`` (cheaper than torch's CPU ``bernoulli_``; dropout
    runs on every activation of every training step). Elsewhere (CUDA) torch's fused kernel is used."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        return x * keep_mask(x.shape, self.p, x.dtype)


def attention_mask(padding: torch.Tensor) -> torch.Tensor:
    """Bool [B, 1, T, T], True where query t may attend key s: s <= t and s is a real item.

    Every position may also attend to itself, so a padding query (whose keys are all padding) still has
    one finite score instead of a row of -inf (NaN after softmax); its output is zeroed afterwards.
    """
    t = padding.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=padding.device).tril()
    allowed = causal[None, :, :] & ~padding[:, None, :]
    allowed = allowed | torch.eye(t, dtype=torch.bool, device=padding.device)[None]
    return allowed[:, None, :, :]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.num_heads={heads} must divide the item vector width {dim}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, T, d], or [B, 1, d] with ``last_only``: keys and values from every position, queries from the last."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, mask, t = q[:, :, -1:], mask[:, :, -1:], 1
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            # torch's CPU attention with dropout is the unfused path with a bernoulli_ mask: the same
            # maths here, with the cheaper mask
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // self.heads))
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            y = (weights * keep_mask(weights.shape, self.dropout, weights.dtype)) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm Transformer block (attention, then a GELU feed-forward), residual connections, dropout."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), Dropout(dropout), nn.Linear(ffn, dim))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        if last_only:
            x = x[:, -1:] + self.drop(self.attn(self.norm1(x), mask, last_only=True))
        else:
            x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    """Hidden states [B, T, d] for item vectors [B, T, d] of left-padded sequences.

    Positions count from the right end (the last column is always position ``max_len - 1``), so a batch
    trimmed of its all-padding leading columns gets exactly the states of the full-width batch: training
    batches of short histories then cost what their longest member costs, not ``max_len``.
    """

    def __init__(self, dim: int, max_len: int, blocks: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.dim, self.max_len = dim, max_len
        self.positions = nn.Embedding(max_len, dim)
        nn.init.normal_(self.positions.weight, std=0.02)  # N(0, 1) would drown the item vectors
        self.emb_drop = Dropout(dropout)
        self.blocks = nn.ModuleList([Block(dim, heads, ffn, dropout) for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, vectors: torch.Tensor, padding: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """States [B, T, d]; with ``last_only`` just the last position's [B, d] (the user state at inference):
        the last block then computes attention and feed-forward for that one query only."""
        t = vectors.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence width {t} exceeds data.max_seq_len={self.max_len}")
        pos = self.positions.weight[self.max_len - t :]
        keep = (~padding).unsqueeze(-1).to(vectors.dtype)
        x = self.emb_drop(vectors * math.sqrt(self.dim) + pos[None]) * keep
        mask = attention_mask(padding)
        for i, block in enumerate(self.blocks):
            if last_only and i == len(self.blocks) - 1:
                return (self.norm(block(x, mask, last_only=True)) * keep[:, -1:])[:, 0]
            x = block(x, mask) * keep
        return self.norm(x) * keep
