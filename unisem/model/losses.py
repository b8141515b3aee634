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


def joint_loss(rec: torch.Tensor, commit: torch.Tensor, recon: torch.Tensor, lambda_rq: float, lambda_text: float) -> JointLoss:
    return JointLoss(rec + lambda_rq * commit + lambda_text * recon, rec, commit, recon)
