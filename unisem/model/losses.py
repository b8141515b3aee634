"""Recommendation losses over an item table, and the joint loss returned by its parts."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class JointLoss(NamedTuple):
    """``total = rec + lambda_rq * commit + lambda_text * recon``; the parts are kept for logging."""

    total: torch.Tensor
    rec: torch.Tensor
    commit: torch.Tensor
    recon: torch.Tensor


class Pool(NamedTuple):
    """A step's negatives: ``items`` (sorted unique item indices) with the log of each one's expected count in
    the pool (``log_q``), and ``target_log_q`` [B, T], the same rate for each position's target (0 at padding).

    A target need not be in the pool: it always has its own column, so the rate it is corrected by is the
    rate it would have entered the pool at."""

    items: torch.Tensor
    log_q: torch.Tensor
    target_log_q: torch.Tensor


def bce_loss(states: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The paper's (SASRec's) loss: per position, the target against one sampled negative, binary CE.

    states [P, d] at real positions, positives/negatives [P] item indices, table [N+1, d].
    """
    pos = (states * table[positives]).sum(-1)
    neg = (states * table[negatives]).sum(-1)
    return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
        neg, torch.zeros_like(neg)
    )


def ce_loss(states: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy over the catalog: one matmul [P, d] x [d, N+1].

    ``blocked`` [N+1] bool marks columns that are never a training class (padding, cold items), so the
    softmax neither learns about cold items nor pushes them down.
    """
    logits = (states @ table.T).masked_fill(blocked[None, :], float("-inf"))
    return F.cross_entropy(logits, targets)


def sampled_softmax_loss(
    states: torch.Tensor,
    targets: torch.Tensor,
    table: torch.Tensor,
    pool: torch.Tensor,
    log_q: torch.Tensor,
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each target against a shared pool of negatives, logQ-corrected.

    states [P, d]; targets [P] and pool [M] are row indices into ``table`` [R, d]; ``log_q`` [R] is the log
    of each row's expected count in the pool (the sampling distribution). Every logit, the target's too, is
    ``s . e - log_q`` (Bengio & Senecal; Yi et al. 2019): subtracting the log sampling rate makes the
    sampled softmax an unbiased estimate of the full one's gradient, so popular in-batch items are not
    pushed down merely for being drawn often. A pool column equal to the row's target is dropped (the
    target has its own column), and so is every column ``excluded`` [P, M] marks (the user's own positives:
    a negative the user did consume teaches the wrong thing). With the pool equal to the whole (warm)
    catalog and a constant ``log_q`` this is exactly ``ce_loss``.
    """
    pos = (states * table[targets]).sum(-1) - log_q[targets]
    drop = pool[None, :] == targets[:, None]
    if excluded is not None:
        drop = drop | excluded
    neg = _PoolLogSumExp.apply(states, table[pool], -log_q[pool], drop)
    # -log softmax of the target's column: log(e^pos + sum e^neg) - pos
    return (torch.logaddexp(pos, neg) - pos).mean()


class _PoolLogSumExp(torch.autograd.Function):
    """Per row, logsumexp of the pool logits ``states @ pool_vectors.T + bias`` over the columns ``drop``
    leaves, with the [P, M] logits kept once and turned into the softmax gradient in place.

    The same maths as autograd through addmm, masked_fill, cat and cross_entropy, with about half the
    passes over the [positions x pool] matrix, the largest tensor of a sampled-softmax step.
    """

    @staticmethod
    def forward(ctx, states, pool_vectors, bias, drop):
        logits = torch.addmm(bias[None, :], states, pool_vectors.T)
        logits.masked_fill_(drop, float("-inf"))
        lse = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(states, pool_vectors, logits, lse)
        ctx.used = False
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if ctx.used:
            raise RuntimeError("the sampled-softmax pool gradient reuses its logits in place: backward runs once")
        ctx.used = True
        states, pool_vectors, logits, lse = ctx.saved_tensors
        # a row whose every column is dropped has lse = -inf and no gradient: exp(-inf - finite) = 0
        finite = lse.clamp_min(torch.finfo(lse.dtype).min)
        g = logits.sub_(finite[:, None]).exp_().mul_(grad[:, None])  # softmax over the pool x upstream grad
        g = g.to(states.dtype)  # under autocast (GPU workers, bf16) the logits are bf16, the inputs are not
        return g @ pool_vectors, g.T @ states, None, None


def joint_loss(rec: torch.Tensor, commit: torch.Tensor, recon: torch.Tensor, lambda_rq: float, lambda_text: float) -> JointLoss:
    return JointLoss(rec + lambda_rq * commit + lambda_text * recon, rec, commit, recon)
