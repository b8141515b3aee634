"""Inference over a trained network: the item table computed once, user state x table = all scores.

User states are computed at trimmed length: the users of a call are sorted by history length and cut into
batches, each batch trimmed to its own longest history, and only the last position's state is formed. On
Beauty (mean history 8.9 of 50 slots) this skips most of the padded forward; the states equal the padded
forward's last position (a test checks it to 1e-5).
"""
from __future__ import annotations

import numpy as np
import torch

from unisem.model.network import UnisemNetwork
from unisem.model.retrieval import DEFAULT_CHUNK_ITEMS, StateScorer, chunked_top_k

# Users per forward of ``user_states``: after sorting by length, a batch this size is trimmed to its longest.
STATE_BATCH_USERS = 256


class Recommender:
    """Scores and top-K for left-padded histories; column 0 (padding) is never recommended."""

    def __init__(self, network: UnisemNetwork, config, item_ids: tuple[str, ...], item_titles: tuple[str, ...]) -> None:
        self.network = network.eval()
        self.config = config
        self.item_ids = tuple(item_ids)
        self.item_titles = tuple(item_titles)
        table = network.item_table()
        self.table = table.vectors
        self.semantic_ids: np.ndarray | None = None if table.codes is None else table.codes.cpu().numpy()
        self.max_len = network.backbone.max_len

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @torch.no_grad()
    def user_states(self, histories: torch.Tensor) -> torch.Tensor:
        """User states [B, d] of left-padded histories [B, L] (the last ``max_len`` items are read)."""
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)[:, -self.max_len :]
        lengths = (histories != 0).sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        out = self.table.new_empty((histories.shape[0], self.table.shape[1]))
        for start in range(0, len(order), STATE_BATCH_USERS):
            rows = order[start : start + STATE_BATCH_USERS]
            out[rows] = self.network.user_states(histories[rows], self.table)
        return out

    @torch.no_grad()
    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """[B, N+1] scores for left-padded histories [B, L]; column 0 is -inf."""
        scores = self.user_states(histories) @ self.table.T
        scores[:, 0] = float("-inf")
        return scores

    def scorer(self, chunk_items: int = DEFAULT_CHUNK_ITEMS) -> StateScorer:
        """This model as states x table, for evaluation that ranks over the catalog in chunks of items."""
        return StateScorer(self.user_states, self.table, chunk_items)

    @torch.no_grad()
    def recommend(
        self, histories: torch.Tensor, k: int, exclude_seen: bool = True, chunk_items: int = DEFAULT_CHUNK_ITEMS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` item indices [B, k] and their scores; items in the history are skipped if asked.

        The catalog is walked in chunks with a running top-``k`` (no [B, N+1] score matrix). When ``k``
        exceeds the items left to recommend, the tail of a row holds excluded items scored -inf.
        """
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)
        k = min(k, self.num_items)
        return chunked_top_k(self.user_states(histories), self.table, k, histories if exclude_seen else None, chunk_items)

    def index_of(self, item_id: str) -> int:
        """Item index (1-based) of an item id; raises with the id when unknown."""
        if not hasattr(self, "_index"):
            self._index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise ValueError(f"unknown item id {item_id!r}: not in this model's catalog") from None
