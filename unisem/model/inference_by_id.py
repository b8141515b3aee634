"""Inference by item id: a trained ``Recommender`` asked in item ids, with items added after training.

The registered pyfunc model and the promotion rule both need to talk to a ``Recommender`` in item ids
rather than in one training run's item indices: a model trained last week is evaluated on today's
features, whose vocabulary may hold items the model never saw. Such an item has text, so it gets a vector
through the model's own RQ-VAE (its semantic tokens) and the shared "unknown" ID vector, exactly as the
model treats its own cold items.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch

from unisem.data.dataset import pad_left


class Recommendations(NamedTuple):
    item_ids: list[list[str]]
    scores: list[list[float]]


class ServingModel:
    """A ``Recommender`` addressed by item ids, extensible with items that arrived after training."""

    def __init__(self, recommender) -> None:
        self.recommender = recommender
        self.added: list[str] = []
        self.item_index = None  # an approximate index (unisem.model.index.ItemIndex), or exact search
        self.nprobe: int | None = None  # None: the index's calibrated probe count

    @property
    def item_ids(self) -> tuple[str, ...]:
        return self.recommender.item_ids

    @property
    def index(self) -> Mapping[str, int]:
        return self.recommender.index_by_id

    @property
    def max_len(self) -> int:
        return int(self.recommender.max_len)

    def add_items(self, item_ids: Sequence[str], text_embeddings: np.ndarray) -> int:
        """Make items known only by text (a newer catalog) recommendable; returns how many were new.

        Ids the model already knows are skipped (their trained vectors win). The new rows are appended to
        the recommender's item table, so they can be scored and can also appear in histories.
        """
        item_ids = [str(i) for i in item_ids]
        emb = np.asarray(text_embeddings, dtype=np.float32)
        if emb.ndim != 2 or len(item_ids) != emb.shape[0]:
            raise ValueError(f"add_items: {len(item_ids)} ids but text embeddings of shape {emb.shape}")
        keep = [j for j, item in enumerate(item_ids) if item not in self.index]
        seen: set[str] = set()
        keep = [j for j in keep if not (item_ids[j] in seen or seen.add(item_ids[j]))]
        if not keep:
            return 0
        vectors, codes = self.recommender.text_only_vectors(emb[keep])
        self.item_index = None
        new_ids = [item_ids[j] for j in keep]
        self.recommender.extend(new_ids, vectors, codes, text_embeddings=emb[keep])
        self.added.extend(new_ids)
        return len(keep)

    def use_index(self, item_index, nprobe: int | None = None) -> None:
        """Answer ``recommend`` from an approximate index over this model's item table (None: exact again).

        The index must cover the current table: items added afterwards are not in it, so adding items
        drops it (exact search is always right; an index is only ever a faster approximation).
        """
        if item_index is not None and item_index.num_items != self.recommender.table.shape[0] - 1:
            raise ValueError(
                f"the item index covers {item_index.num_items} items but the model scores {self.recommender.table.shape[0] - 1}"
            )
        self.item_index, self.nprobe = item_index, nprobe

    def indices(self, history: Sequence[str]) -> list[int]:
        """Item indices of a history; ids this model does not know are left out (they carry no signal)."""
        return [self.index[str(i)] for i in history if str(i) in self.index]

    def scores(self, histories: Sequence[Sequence[str]]) -> tuple[torch.Tensor, list[list[int]]]:
        """Scores [B, N'+1] over every known item (column 0 = -inf) and the index form of each history."""
        rows = [self.indices(h) for h in histories]
        padded = torch.as_tensor(pad_left([np.asarray(r, dtype=np.int64) for r in rows], self.max_len))
        return self.recommender.score(padded), rows

    def recommend(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True) -> Recommendations:
        """Top-``k`` item ids with scores per history; seen items (the whole history, not just the part the
        model reads) are excluded unless asked otherwise; fewer than ``k`` come back only when the catalog
        runs out. States at trimmed length, the catalog walked in chunks with a running top-``k``."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        rows = [self.indices(h) for h in histories]
        arrays = [np.asarray(r, dtype=np.int64) for r in rows]
        rec = self.recommender
        states = rec.scoring_states(torch.as_tensor(pad_left(arrays, self.max_len)))
        seen = torch.as_tensor(pad_left(arrays, max([len(r) for r in rows] + [1]))) if exclude_seen else None
        top_i, top_v = rec.top_k(states, k, seen, item_index=self.item_index, nprobe=self.nprobe)
        ids, ids_out, scores_out = rec.item_ids, [], []
        for idx, val in zip(top_i.tolist(), top_v.tolist()):
            pairs = [(ids[i - 1], v) for i, v in zip(idx, val) if i > 0 and v != float("-inf")]
            ids_out.append([p[0] for p in pairs])
            scores_out.append([float(p[1]) for p in pairs])
        return Recommendations(ids_out, scores_out)

    def aligned_score_fn(self, item_ids: Sequence[str]):
        """A score function in another vocabulary (e.g. today's features): histories [B, L] of indices into
        ``item_ids`` (1-based) -> scores [B, len(item_ids)+1] in the same indexing.

        Items of ``item_ids`` this model does not know must have been added with ``add_items`` first (else
        they score -inf: never recommended, which is the honest outcome for a model that cannot see them).
        """
        to_mine = np.zeros(len(item_ids) + 1, dtype=np.int64)
        for j, item in enumerate(item_ids):
            to_mine[j + 1] = self.index.get(str(item), 0)
        to_mine_t = torch.as_tensor(to_mine)
        known = to_mine_t > 0

        def score_fn(histories: torch.Tensor) -> torch.Tensor:
            hist = torch.as_tensor(histories, dtype=torch.long)
            mine = to_mine_t[hist]
            # unknown ids become padding; re-pack to the left so the latest known item stays last
            packed = pad_left([row[row > 0].numpy() for row in mine], self.max_len)
            own = self.recommender.score(torch.as_tensor(packed))
            out = torch.full((hist.shape[0], len(item_ids) + 1), float("-inf"), dtype=own.dtype)
            out[:, known] = own[:, to_mine_t[known]]
            return out

        return score_fn
