"""Reference scorers that need no training, for the numbers a model has to beat.

Both follow the ``score_fn`` contract of ``unisem.evaluate.protocols.evaluate`` (left-padded histories
[B, L] -> scores [B, N+1], column 0 = padding at -inf), so they are ranked by exactly the same protocols,
seen-item exclusion and tie rule as a trained model.

- **popularity**: an item's number of training interactions. Cold items (held out of training) score 0,
  which is what a popularity recommender can know about a new item.
- **text-kNN**: the mean cosine similarity between an item's text embedding and those of the user's last
  ``window`` items. It is the cold-start baseline: it needs no
  interactions, so a new item is scored exactly like an old one. A model that claims to use the text for
  cold items should beat it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from unisem.data.dataset import SequenceDataset
from unisem.model.new_item_prior import unit_text

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def training_counts(data: SequenceDataset) -> np.ndarray:
    """float32 [N+1]: how often each item occurs in the training histories (index 0 = padding, 0)."""
    counts = np.zeros(data.num_items + 1, dtype=np.float32)
    if data.histories:
        flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in data.histories])
        counts += np.bincount(flat, minlength=data.num_items + 1)[: data.num_items + 1].astype(np.float32)
    counts[0] = 0.0
    return counts


def popularity_scorer(data: SequenceDataset) -> ScoreFn:
    """Every user gets the same scores: training interaction counts."""
    row = torch.from_numpy(training_counts(data))
    row[0] = float("-inf")

    def score(histories: torch.Tensor) -> torch.Tensor:
        return row.expand(histories.shape[0], -1).clone()

    return score


def text_knn_scorer(text_embeddings: np.ndarray, window: int = 3) -> ScoreFn:
    """Mean cosine similarity of every item's text to the texts of the last ``window`` history items.

    ``text_embeddings`` is float [N+1, d] with row 0 the padding. An empty history scores every item 0.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    table = unit_text(torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32)))

    def score(histories: torch.Tensor) -> torch.Tensor:
        recent = torch.as_tensor(histories, dtype=torch.long)[:, -window:]
        vectors = table[recent]                           # [B, w, d]; padding rows are zero
        real = (recent != 0).sum(dim=1, keepdim=True).clamp_min(1)
        query = vectors.sum(dim=1) / real                 # mean over the real recent items
        scores = query @ table.T
        scores[:, 0] = float("-inf")
        return scores

    return score
