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
from unisem.model.losses import JointLoss, Pool, bce_loss, ce_loss, joint_loss, sampled_softmax_loss


def unwrap(model: nn.Module) -> "UnisemNetwork":
    """The network inside a DDP (or similar) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model  # type: ignore[return-value]


class UnisemNetwork(nn.Module):
    def __init__(self, cfg, num_items: int, text_embeddings: torch.Tensor | None, cold_items: torch.Tensor) -> None:
        super().__init__()
        m = cfg.model
        self.loss_name = cfg.training.loss_for(num_items)
        self.lambda_rq, self.lambda_text = cfg.training.lambda_rq, cfg.training.lambda_text
        self.recon_cap = cfg.training.recon_rows
        # Only exact for BCE: with a full softmax, items outside the batch would sit in the denominator
        # without gradient, and the encoder learns to inflate every batch item against them (it diverges).
        self.batch_table = cfg.training.item_table == "batch" and self.loss_name == "bce"
        self.items_table_mode = cfg.training.item_table
        self.items = ItemRepresentation(
            m.variant, num_items, text_embeddings, cold_items, cfg.quantizer, m.id_dim, m.id_only_dim, m.id_dropout,
            sparse_ids=cfg.training.sparse_ids_for(num_items), cold_id=m.cold_id,
        )
        self.backbone = SASRec(self.items.dim, cfg.data.max_seq_len, m.num_blocks, m.num_heads, m.ffn_dim, m.dropout)

    @property
    def num_items(self) -> int:
        return self.items.num_items

    def states(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, T, d] of left-padded item indices [B, T]."""
        return self.backbone(table[inputs], inputs == 0)

    def user_states(self, inputs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Last-position states [B, d] of left-padded histories [B, T], computed at trimmed width.

        Columns that are padding in every row are dropped first (exact: positions count from the right), and
        only the last position goes through the last block's attention and feed-forward.
        """
        real = (inputs != 0).any(dim=0)
        start = int(real.to(torch.int8).argmax()) if bool(real.any()) else inputs.shape[1] - 1
        inputs = inputs[:, start:]
        return self.backbone(table[inputs], inputs == 0, last_only=True)

    def forward(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
        pool: Pool | None = None,
        seen: torch.Tensor | None = None,
    ) -> JointLoss:
        """Joint loss of a batch: ``targets[b, t]`` is the item after ``inputs[b, :t+1]`` (0 = no target).

        ``negatives`` [B, T] for BCE; the step's ``pool`` (``draw_pool``) and the users' ``seen`` items [B, H]
        for the sampled softmax.
        """
        real = targets > 0
        if self.loss_name == "sampled":
            if pool is None:
                raise ValueError("training.loss=sampled needs a negative pool and its log sampling rates")
            return self._sampled(inputs, targets, real, pool, seen)
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

    def _sampled(self, inputs, targets, real, pool: Pool, seen) -> JointLoss:
        """Sampled softmax on a table of the touched items only (inputs, targets and pool).

        Exact, not an approximation: the loss reads no row outside them, so the rows of the other items
        would carry neither value nor gradient into it. With ``item_table=full`` the same loss runs on the
        whole catalog's table (slower; the two give the same loss, which a test checks).
        """
        batch_items = torch.unique(torch.cat([inputs[inputs > 0], targets[real]]))
        recon_rows = reconstruction_sample(batch_items, self.recon_cap) if self.training else batch_items
        items = pool.items
        if self.items_table_mode == "full":
            table: ItemTable = self.items(recon_rows=recon_rows)
            vectors, local = table.vectors, (lambda x: x)
        else:
            touched = torch.unique(torch.cat([batch_items, items]))
            table = self.items.rows(touched, recon_rows=recon_rows)
            vectors = torch.cat([table.vectors.new_zeros(1, table.vectors.shape[1]), table.vectors])
            local = lambda x: torch.where(x > 0, torch.searchsorted(touched, x.contiguous()) + 1, 0)  # noqa: E731
        log_q = vectors.new_zeros(len(vectors))
        log_q[local(targets[real])] = pool.target_log_q[real].to(vectors.dtype)
        log_q[local(items)] = pool.log_q.to(vectors.dtype)
        states = self.backbone(vectors[local(inputs)], inputs == 0)[real]
        excluded = None
        if seen is not None:
            excluded = own_positives(seen, items, self.num_items)[real.nonzero()[:, 0]]
        rec = sampled_softmax_loss(states, local(targets[real]), vectors, local(items), log_q, excluded)
        return joint_loss(rec, table.commit_loss, table.recon_loss, self.lambda_rq, self.lambda_text)

    def catalog_buffers(self) -> list[str]:
        """Names of the buffers every worker builds identically from the catalog (text embeddings, the cold
        mask) or keeps for its own batches only (the cached semantic IDs, refreshed from the shared weights).

        A DDP wrapper must not broadcast them from rank 0 at every forward, as it does buffers by default:
        at a million items the text embeddings alone are 1.5 GB a step. The codebooks' EMA buffers stay
        synchronised.
        """
        names = [f"items.{name}" for name in ("text", "cold", "cached_codes")]
        own = {name for name, _ in self.named_buffers()}
        return [name for name in names if name in own]

    def blocked_classes(self) -> torch.Tensor:
        blocked = self.items.cold.clone()
        blocked[0] = True
        return blocked

    @torch.no_grad()
    def item_table(self) -> ItemTable:
        """The evaluation table (no ID dropout; cold items' ID parts by ``model.cold_id``); call in eval mode.

        No reconstruction rows: scoring never reads the reconstruction loss, and decoding every item back to
        its text embedding was as much work again as encoding it.
        """
        return self.items(recon_rows=self.items.cold.new_zeros(0, dtype=torch.long))


def reconstruction_sample(items: torch.Tensor, cap: int) -> torch.Tensor:
    """A uniform sample (without replacement, kept sorted) of at most ``cap`` of the sorted ``items``; all
    of them when ``cap`` is 0 or not below their number (``training.recon_rows``)."""
    if not 0 < cap < len(items):
        return items
    pick = torch.randperm(len(items), device=items.device)[:cap]
    return items[pick.sort().values]


def own_positives(seen: torch.Tensor, pool: torch.Tensor, num_items: int) -> torch.Tensor:
    """bool [B, M]: which pool items each user has among its ``seen`` items [B, H] (0 = padding).

    One sorted search over (user, item) keys: O(B x M log BH), never a [B, M, H] comparison.
    """
    width = num_items + 2
    users = torch.arange(seen.shape[0], device=seen.device)[:, None]
    keys = (users * width + seen)[seen > 0].sort().values
    query = users * width + pool[None, :]
    if keys.numel() == 0:
        return torch.zeros(query.shape, dtype=torch.bool, device=seen.device)
    at = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    return keys[at] == query


def build_network(cfg, num_items: int, text_embeddings: np.ndarray | None, cold_items: np.ndarray) -> UnisemNetwork:
    text = None if text_embeddings is None else torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    needs_text = cfg.model.variant != "id-only"
    return UnisemNetwork(cfg, num_items, text if needs_text else None, torch.as_tensor(np.asarray(cold_items, dtype=np.int64)))
