"""The trainable network: item representation + SASRec backbone; ``forward`` returns the joint loss.

The loss is computed inside ``forward`` so a DistributedDataParallel wrapper (Ray workers) sees every
parameter used in the call it wraps and synchronises gradients; code outside reaches submodules through
``unwrap``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unisem.model.backbone import SASRec
from unisem.model.items import ItemRepresentation, ItemTable
from unisem.model.losses import JointLoss, bce_loss, ce_loss, joint_loss


def unwrap(model: nn.Module) -> "UnisemNetwork":
    """The network inside a DDP (or similar) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model  # type: ignore[return-value]


class UnisemNetwork(nn.Module):
    def __init__(self, cfg, num_items: int, text_embeddings: torch.Tensor | None, cold_items: torch.Tensor) -> None:
        super().__init__()
        m = cfg.model
        self.loss_name = cfg.training.loss
        self.lambda_rq, self.lambda_text = cfg.training.lambda_rq, cfg.training.lambda_text
        # Only exact for BCE: with a full softmax, items outside the batch would sit in the denominator
        # without gradient, and the encoder learns to inflate every batch item against them (it diverges).
        self.batch_table = cfg.training.item_table == "batch" and cfg.training.loss == "bce"
        self.items = ItemRepresentation(
            m.variant, num_items, text_embeddings, cold_items, cfg.quantizer, m.id_dim, m.id_only_dim, m.id_dropout
        )
        self.backbone = SASRec(self.items.dim, cfg.data.max_seq_len, m.num_blocks, m.num_heads, m.ffn_dim, m.dropout)

    @property
    def num_items(self) -> int:
        return self.items.num_items

    def states(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, T, d] of left-padded item indices [B, T]."""
        return self.backbone(table[inputs], inputs == 0)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None = None) -> JointLoss:
        """Joint loss of a batch: ``targets[b, t]`` is the item after ``inputs[b, :t+1]`` (0 = no target)."""
        real = targets > 0
        batch_items = torch.unique(torch.cat([inputs[inputs > 0], targets[real]]))
        if self.batch_table:
            touched = batch_items if negatives is None else torch.unique(torch.cat([batch_items, negatives[real]]))
            table: ItemTable = self.items(recon_rows=batch_items, batch_items=touched)
        else:
            table = self.items(recon_rows=batch_items)
        states = self.states(inputs, table.vectors)[real]
        if self.loss_name == "bce":
            if negatives is None:
                raise ValueError("training.loss=bce needs sampled negatives")
            rec = bce_loss(states, targets[real], negatives[real], table.vectors)
        else:
            rec = ce_loss(states, targets[real], table.vectors, self.blocked_classes())
        return joint_loss(rec, table.commit_loss, table.recon_loss, self.lambda_rq, self.lambda_text)

    def blocked_classes(self) -> torch.Tensor:
        blocked = self.items.cold.clone()
        blocked[0] = True
        return blocked

    @torch.no_grad()
    def item_table(self) -> ItemTable:
        """The evaluation table (no ID dropout; cold items on the unknown ID); call in eval mode."""
        return self.items()


def build_network(cfg, num_items: int, text_embeddings: np.ndarray | None, cold_items: np.ndarray) -> UnisemNetwork:
    text = None if text_embeddings is None else torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    needs_text = cfg.model.variant != "id-only"
    return UnisemNetwork(cfg, num_items, text if needs_text else None, torch.as_tensor(np.asarray(cold_items, dtype=np.int64)))
