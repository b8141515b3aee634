"""Serving a trained model by item ids: id <-> index mapping, seen-item exclusion, and items added later.

The registered pyfunc model and the promotion rule both need to talk to a ``Recommender`` in item ids
rather than in one training run's item indices: a model trained last week is evaluated on today's
features, whose vocabulary may hold items the model never saw. Such an item has text, so it gets a vector
through the model's own RQ-VAE (its semantic tokens) and the shared "unknown" ID vector, exactly as the
model treats its own cold items.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from unisem.data.dataset import pad_left
from unisem.model.retrieval import chunked_top_k


class Recommendations(NamedTuple):
    item_ids: list[list[str]]
    scores: list[list[float]]


def new_item_vectors(recommender, text_embeddings: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Item vectors [M, d] and semantic IDs [M, L] (or None) for items known only by their text embedding.

    Same construction as the network's item table for a cold item: ``z`` from the RQ-VAE of the text and the
    shared unknown ID vector (row N+1 of the ID table); an id-only model has nothing but the unknown vector.
    """
    items = recommender.network.items
    x = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"text embeddings of new items must be a non-empty [M, dim] array, got shape {tuple(x.shape)}")
    parts, codes = [], None
    with torch.no_grad():
        if items.has_semantic:
            want = items.text.shape[1]
            if x.shape[1] != want:
                raise ValueError(
                    f"text embeddings of new items have width {x.shape[1]} but the model was trained on width {want}"
                    " (a different text encoder?)"
                )
            out = items.rqvae(x)
            parts.append(out.z)
            codes = out.codes
        if items.has_id:
            unknown = items.ids.weight[items.num_items + 1]
            parts.append(unknown.expand(x.shape[0], -1))
    return torch.cat(parts, dim=1).to(recommender.table.dtype), codes


class ServingModel:
    """A ``Recommender`` addressed by item ids, extensible with items that arrived after training."""

    def __init__(self, recommender) -> None:
        self.recommender = recommender
        self.item_ids: list[str] = list(recommender.item_ids)
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        self.added: list[str] = []
        self.item_index = None  # an approximate index (unisem.model.index.ItemIndex), or exact search
        self.nprobe: int | None = None  # None: the index's calibrated probe count

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
        vectors, codes = new_item_vectors(self.recommender, emb[keep])
        self.item_index = None
        rec = self.recommender
        rec.table = torch.cat([rec.table, vectors])
        if rec.semantic_ids is not None and codes is not None:
            rec.semantic_ids = np.concatenate([rec.semantic_ids, codes.cpu().numpy()])
        for j in keep:
            self.item_ids.append(item_ids[j])
            self.index[item_ids[j]] = len(self.item_ids)
            self.added.append(item_ids[j])
        rec.item_ids = tuple(self.item_ids)
        if hasattr(rec, "_index"):
            del rec._index
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
        states = rec.user_states(torch.as_tensor(pad_left(arrays, self.max_len)))
        seen = torch.as_tensor(pad_left(arrays, max([len(r) for r in rows] + [1]))) if exclude_seen else None
        if self.item_index is not None:
            top_i = self.item_index.search(states, min(k, rec.table.shape[0] - 1), seen, self.nprobe)
            top_v = torch.where(top_i > 0, (states[:, None, :] * rec.table[top_i]).sum(-1), float("-inf"))
        else:
            top_i, top_v = chunked_top_k(states, rec.table, min(k, rec.table.shape[0] - 1), seen)
        ids_out, scores_out = [], []
        for idx, val in zip(top_i.tolist(), top_v.tolist()):
            pairs = [(self.item_ids[i - 1], v) for i, v in zip(idx, val) if i > 0 and v != float("-inf")]
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
