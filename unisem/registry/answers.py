"""What a served model answers for a history it cannot fully read: the same rules for the REST endpoint, the
CLI and the nightly batch, so none of them can disagree.

- Item ids the model does not know are dropped from the history and reported (``unknown_ids``): silently
  scoring around them would make an answer look better informed than it is, and refusing the whole request
  would punish a catalog that moved on.
- A history with nothing known left (or an empty one) has no signal for the sequence model: its "top items"
  would be whatever the untrained-for empty state ranks first. It gets the **fallback** instead: the items most
  often seen in the model's training histories, with their share of those interactions as the score.
- Every answer says which it is: ``source`` is ``model`` or ``fallback``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

SOURCE_MODEL, SOURCE_FALLBACK = "model", "fallback"
POPULARITY_FILE = "popularity.json"


class Answer(NamedTuple):
    item_ids: list[str]
    scores: list[float]
    source: str  # SOURCE_MODEL | SOURCE_FALLBACK
    unknown_ids: list[str]


class Popularity(NamedTuple):
    """Items by their share of the training interactions, most popular first (ties: catalog order)."""

    item_ids: tuple[str, ...]
    shares: tuple[float, ...]

    @classmethod
    def empty(cls) -> "Popularity":
        return cls((), ())


def popularity_from_counts(item_ids: Sequence[str], counts: Sequence[float]) -> Popularity:
    """Rank items by count (descending, ties by their order in ``item_ids``); scores are shares of the total.
    Items never seen in training are left out: the fallback recommends only what someone actually chose."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    if counts_arr.shape != (len(item_ids),):
        raise ValueError(f"popularity: {len(item_ids)} item ids but {counts_arr.shape[0]} counts")
    total = counts_arr.sum()
    order = np.argsort(-counts_arr, kind="stable")
    order = order[counts_arr[order] > 0]
    return Popularity(tuple(str(item_ids[i]) for i in order), tuple(float(counts_arr[i] / total) for i in order))


def training_popularity(data) -> Popularity:
    """Popularity over the training part of a ``SequenceDataset`` (histories only: the validation and test
    items are what the model is judged on, so they must not leak into what it serves)."""
    counts = np.zeros(len(data.item_ids) + 1, dtype=np.int64)
    for history in data.histories:
        np.add.at(counts, np.asarray(history, dtype=np.int64), 1)
    return popularity_from_counts(data.item_ids, counts[1:])


def write_popularity(popularity: Popularity, folder: str | Path, basis: str) -> Path:
    path = Path(folder) / POPULARITY_FILE
    path.write_text(json.dumps({"basis": basis, "item_ids": list(popularity.item_ids),
                                "shares": list(popularity.shares)}))
    return path


def read_popularity(folder: str | Path) -> Popularity:
    """The popularity staged beside a registered model; a model registered without its features has none
    (its fallback is then an empty list, still marked ``fallback``)."""
    path = Path(folder) / POPULARITY_FILE
    if not path.exists():
        return Popularity.empty()
    data = json.loads(path.read_text())
    ids, shares = data.get("item_ids"), data.get("shares")
    if not isinstance(ids, list) or not isinstance(shares, list) or len(ids) != len(shares):
        raise ValueError(f"{path}: expected 'item_ids' and 'shares' lists of the same length")
    return Popularity(tuple(str(i) for i in ids), tuple(float(s) for s in shares))


def split_known(history: Sequence[str], known) -> tuple[list[str], list[str]]:
    """(known ids in order, distinct unknown ids in order of first appearance)."""
    kept, unknown = [], []
    for item in history:
        item = str(item)
        if item in known:
            kept.append(item)
        elif item not in unknown:
            unknown.append(item)
    return kept, unknown


def fallback_top_k(popularity: Popularity, k: int, exclude: set[str] = frozenset(), known=None) -> tuple[list[str], list[float]]:
    """The ``k`` most popular items not in ``exclude`` (and, when given, known to the model)."""
    ids, scores = [], []
    for item, share in zip(popularity.item_ids, popularity.shares):
        if item in exclude or (known is not None and item not in known):
            continue
        ids.append(item)
        scores.append(share)
        if len(ids) == k:
            break
    return ids, scores


def answer(serving, popularity: Popularity, histories: Sequence[Sequence[str]], k: int = 10,
           exclude_seen: bool = True) -> list[Answer]:
    """One ``Answer`` per history: the model's top-``k`` after dropping unknown ids, or the fallback when no
    known id is left. ``serving`` is a ``unisem.model.inference_by_id.ServingModel`` (its ``index`` and
    ``recommend``); model rows are scored in one batch."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    split = [split_known(h, serving.index) for h in histories]
    model_rows = [i for i, (kept, _) in enumerate(split) if kept]
    out: list[Answer | None] = [None] * len(split)
    if model_rows:
        recs = serving.recommend([split[i][0] for i in model_rows], k=k, exclude_seen=exclude_seen)
        for j, i in enumerate(model_rows):
            out[i] = Answer(recs.item_ids[j], recs.scores[j], SOURCE_MODEL, split[i][1])
    for i, (kept, unknown) in enumerate(split):
        if out[i] is None:
            ids, scores = fallback_top_k(popularity, k, known=serving.index)
            out[i] = Answer(ids, scores, SOURCE_FALLBACK, unknown)
    return out  # type: ignore[return-value]
