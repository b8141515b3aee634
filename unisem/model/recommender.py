"""Inference over a trained network: the item table computed once, user state x table = all scores.

User states are computed at trimmed length: the users of a call are sorted by history length and cut into
batches, each batch trimmed to its own longest history, and only the last position's state is formed. On
Beauty (mean history 8.9 of 50 slots) this skips most of the padded forward; the states equal the padded
forward's last position (a test checks it to 1e-5).

With ``model.new_item_prior: text`` the items without interactions (held out of training, or added after
it) are ranked by the text prior of ``unisem.model.new_item_prior``: scoring then uses the extended states
and table (``scoring_states`` / ``scoring_table``), the model's own ``table`` and ``user_states`` stay as
trained (the item index, borrowing IDs and the registry read those).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from unisem.model import new_item_prior as prior
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
        self.prior: prior.PriorSettings | None = None
        self.text: torch.Tensor | None = None  # unit text rows [N+1, T], kept only for the prior
        self.new = network.items.cold.clone().to(self.table.device)  # items without interactions
        self._scoring_table: torch.Tensor | None = None
        m = config.model
        if m.new_item_prior == prior.TEXT:
            if getattr(network.items, "text", None) is None:
                raise ValueError(f"model.new_item_prior=text needs the items' text; model.variant={m.variant} has none")
            self.prior = prior.PriorSettings(m.new_item_bias, m.new_item_temperature)
            self.text = prior.unit_text(network.items.text).to(self.table.device)

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

    @property
    def prior_active(self) -> bool:
        """The text prior is configured and some item of the catalog has no interactions."""
        return self.prior is not None and bool(self.new.any())

    def scoring_table(self) -> torch.Tensor:
        """The rows scores are dot products with: the model's table, or its extension by the prior."""
        if not self.prior_active:
            return self.table
        if self._scoring_table is None:
            self._scoring_table = prior.prior_table(self.table, self.text, self.new, self.prior)
        return self._scoring_table

    @torch.no_grad()
    def scoring_states(self, histories: torch.Tensor, chunk_items: int = DEFAULT_CHUNK_ITEMS) -> torch.Tensor:
        """User states to rank ``scoring_table`` with: ``user_states``, extended when the prior is active."""
        states = self.user_states(histories)
        if not self.prior_active:
            return states
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)
        lse = prior.warm_log_normaliser(states, self.table, prior.warm_items(self.new), chunk_items)
        return prior.prior_states(states, lse, self.text[histories[:, -1]], self.prior)

    @torch.no_grad()
    def score(self, histories: torch.Tensor) -> torch.Tensor:
        """[B, N+1] scores for left-padded histories [B, L]; column 0 is -inf."""
        scores = self.scoring_states(histories) @ self.scoring_table().T
        scores[:, 0] = float("-inf")
        return scores

    def scorer(self, chunk_items: int = DEFAULT_CHUNK_ITEMS) -> StateScorer:
        """This model as states x table, for evaluation that ranks over the catalog in chunks of items."""
        return StateScorer(lambda h: self.scoring_states(h, chunk_items), self.scoring_table(), chunk_items)

    @torch.no_grad()
    def top_k(
        self,
        states: torch.Tensor,
        k: int,
        seen: torch.Tensor | None = None,
        chunk_items: int = DEFAULT_CHUNK_ITEMS,
        item_index=None,
        nprobe: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` item indices [B, k] and scores of ``scoring_states`` [B, d'], never an item in ``seen``.

        ``seen`` holds item indices per row (0 pads), e.g. the whole history rather than the part the model
        reads. Exact by default: the catalog is walked in chunks with a running top-``k`` (no [B, N+1] score
        matrix); with ``item_index`` (``unisem.model.index.ItemIndex`` over this table) the approximate
        search answers instead, probing ``nprobe`` cells (None: the index's calibrated count). The index holds
        the model's table, so while the text prior is active the search is exact. When ``k`` exceeds the items
        left, a row's tail holds -inf (excluded) items.
        """
        k = min(k, self.num_items)
        if item_index is None or self.prior_active:
            return chunked_top_k(states, self.scoring_table(), k, seen, chunk_items)
        top_i = item_index.search(states, k, seen, nprobe)
        return top_i, torch.where(top_i > 0, (states[:, None, :] * self.table[top_i]).sum(-1), float("-inf"))

    @torch.no_grad()
    def recommend(
        self, histories: torch.Tensor, k: int, exclude_seen: bool = True, chunk_items: int = DEFAULT_CHUNK_ITEMS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``top_k`` of left-padded histories [B, L]; items in the history are skipped if asked."""
        histories = torch.as_tensor(histories, dtype=torch.long, device=self.table.device)
        return self.top_k(self.scoring_states(histories, chunk_items), k, histories if exclude_seen else None, chunk_items)

    def text_only_vectors(self, text_embeddings) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Vectors and semantic IDs for items known only by their text, built as the model builds a cold item."""
        codes = None if self.semantic_ids is None else torch.as_tensor(self.semantic_ids, device=self.table.device)
        # the table this model already holds: borrowing IDs needs no second encoding of the catalog
        vectors, codes = self.network.items.text_only_vectors(
            torch.as_tensor(text_embeddings, dtype=torch.float32), self.table, codes)
        return vectors.to(device=self.table.device, dtype=self.table.dtype), codes

    def extend(
        self,
        item_ids: Sequence[str],
        vectors: torch.Tensor,
        semantic_ids: torch.Tensor | np.ndarray | None = None,
        item_titles: Sequence[str] | None = None,
        text_embeddings: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Append items to the scored catalog: they get indices N+1.., can be recommended and read in histories.

        They have no interactions, so the text prior (when configured) ranks them, from ``text_embeddings``.

        Ids already in the catalog are refused (their trained vectors would be shadowed); callers that merge a
        newer catalog drop them first.
        """
        item_ids = tuple(str(i) for i in item_ids)
        if vectors.ndim != 2 or vectors.shape[0] != len(item_ids) or vectors.shape[1] != self.table.shape[1]:
            raise ValueError(
                f"extend: {len(item_ids)} ids need vectors of shape [{len(item_ids)}, {self.table.shape[1]}],"
                f" got {tuple(vectors.shape)}"
            )
        if self.semantic_ids is not None and semantic_ids is None:
            raise ValueError("extend: this model has semantic IDs; the new items need theirs too")
        known = [i for i in item_ids if i in self._ids()]
        if known or len(set(item_ids)) != len(item_ids):
            raise ValueError(f"extend: item id {(known or [item_ids[0]])[0]!r} is already in the catalog or repeated")
        titles = tuple(item_titles) if item_titles is not None else ("",) * len(item_ids)
        if len(titles) != len(item_ids):
            raise ValueError(f"extend: {len(titles)} titles for {len(item_ids)} items")
        if self.prior is not None:
            if text_embeddings is None:
                raise ValueError("extend: model.new_item_prior=text ranks new items by their text; pass their text embeddings")
            text = torch.as_tensor(text_embeddings, dtype=torch.float32, device=self.table.device)
            if tuple(text.shape) != (len(item_ids), self.text.shape[1]):
                raise ValueError(f"extend: text embeddings of shape {tuple(text.shape)}; expected [{len(item_ids)}, {self.text.shape[1]}]")
            self.text = torch.cat([self.text, prior.unit_text(text)])
        self.new = torch.cat([self.new, self.new.new_ones(len(item_ids))])
        self._scoring_table = None
        self.table = torch.cat([self.table, vectors.to(device=self.table.device, dtype=self.table.dtype)])
        if self.semantic_ids is not None:
            extra = semantic_ids.cpu().numpy() if isinstance(semantic_ids, torch.Tensor) else np.asarray(semantic_ids)
            self.semantic_ids = np.concatenate([self.semantic_ids, extra.astype(self.semantic_ids.dtype)])
        start = len(self.item_ids)
        self.item_ids = self.item_ids + item_ids
        self.item_titles = self.item_titles + titles
        self._ids().update({item: start + j + 1 for j, item in enumerate(item_ids)})

    @property
    def index_by_id(self) -> Mapping[str, int]:
        """Item id -> item index (1-based), for every item of the catalog including added ones."""
        return self._ids()

    def _ids(self) -> dict[str, int]:
        if not hasattr(self, "_index"):
            self._index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        return self._index

    def index_of(self, item_id: str) -> int:
        """Item index (1-based) of an item id; raises with the id when unknown."""
        try:
            return self._ids()[item_id]
        except KeyError:
            raise ValueError(f"unknown item id {item_id!r}: not in this model's catalog") from None
