"""Inference over a trained network: the item table computed once, user state x table = all scores."""
from __future__ import annotations

import numpy as np
import torch

from unisem.model.network import UnisemNetwork


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
    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """[B, N+1] scores for left-padded histories [B, L]; column 0 is -inf."""
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)[:, -self.max_len :]
        states = self.network.states(histories, self.table)[:, -1]
        scores = states @ self.table.T
        scores[:, 0] = float("-inf")
        return scores

    @torch.no_grad()
    def recommend(self, histories: torch.Tensor, k: int, exclude_seen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` item indices [B, k] and their scores; items in the history are skipped if asked.

        When ``k`` exceeds the items left to recommend, the tail of a row holds excluded items scored -inf.
        """
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)
        scores = self.score(histories)
        if exclude_seen:
            scores.scatter_(1, histories, float("-inf"))
        k = min(k, self.num_items)
        top = scores.topk(k, dim=1)
        return top.indices, top.values

    def index_of(self, item_id: str) -> int:
        """Item index (1-based) of an item id; raises with the id when unknown."""
        if not hasattr(self, "_index"):
            self._index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        try:
            return self._index[item_id]
        except KeyError:
            raise ValueError(f"unknown item id {item_id!r}: not in this model's catalog") from None
