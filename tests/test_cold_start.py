"""The cold-start holdout and the untrained baselines the cold slice is compared with."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from evaluation_datasets import make_dataset

from unisem.config import load_config
from unisem.config.schema import EvaluationConfig
from unisem.data.dataset import choose_cold_items, sequences_from_lists, split_inputs
from unisem.evaluate.baselines import popularity_scorer, text_knn_scorer, training_counts
from unisem.evaluate.protocols import evaluate
from unisem.model.network import build_network
from unisem.train.examples import training_arrays


def test_text_knn_is_the_mean_cosine_to_the_recent_items_hand_computed():
    # Items 1..4 in 2-d: (1,0), (0,2), (1,1), (-3,0); row 0 = padding.
    emb = np.array([[0, 0], [1, 0], [0, 2], [1, 1], [-3, 0]], dtype=np.float32)
    score = text_knn_scorer(emb, window=2)
    got = score(torch.tensor([[0, 4, 1, 2], [0, 0, 0, 3]]))
    r = 1 / math.sqrt(2)
    # User 0: last two items 1 and 2 -> mean of cos(., item1) and cos(., item2).
    want0 = [(1 + 0) / 2, (0 + 1) / 2, (r + r) / 2, (-1 + 0) / 2]
    # User 1: one real item (3); padding does not dilute the mean.
    want1 = [r, r, 1.0, -r]
    assert got[:, 0].isneginf().all()
    assert got[0, 1:].tolist() == pytest.approx(want0, abs=1e-6)
    assert got[1, 1:].tolist() == pytest.approx(want1, abs=1e-6)
    with pytest.raises(ValueError, match="window"):
        text_knn_scorer(emb, window=0)


def test_popularity_counts_training_histories_only_and_cold_items_score_zero():
    data = make_dataset([[1, 1, 2, 3, 4], [2, 1, 5, 3]], num_items=5, cold=(5,))
    assert training_counts(data).tolist() == [0, 3, 2, 0, 0, 0]
    scores = popularity_scorer(data)(torch.zeros(3, 4, dtype=torch.long))
    assert scores.shape == (3, 6) and scores[:, 0].isneginf().all()
    assert scores[1, 1:].tolist() == [3, 2, 0, 0, 0]


def test_cold_items_are_chosen_by_a_seeded_hash_and_never_reach_training():
    items = [f"i{j}" for j in range(50)]
    cold = choose_cold_items(items, 0.1, seed=3)
    assert len(cold) == 5 and cold == choose_cold_items(list(reversed(items)), 0.1, seed=3)
    assert cold != choose_cold_items(items, 0.1, seed=4)
    assert choose_cold_items(items, 0.0, seed=3) == ()
    rng = np.random.default_rng(0)
    seqs = {f"u{u}": [items[j] for j in rng.integers(0, 50, size=int(rng.integers(3, 12)))] for u in range(200)}
    data = sequences_from_lists(seqs, items, cold_items=cold)
    cold_idx = set(data.cold_items.tolist())
    assert cold_idx == {items.index(c) + 1 for c in cold}
    # Never in a training history (so never a training target either: targets are history positions) ...
    assert not any(cold_idx & set(h.tolist()) for h in data.histories)
    arrays = training_arrays(data, 50)
    assert not np.isin(arrays.targets, list(cold_idx)).any()
    # ... never a training class of the softmax, but still in the ranked catalog.
    cfg = load_config(None, ["model.variant=unified", "quantizer.codebook_size=4", "quantizer.levels=2"])
    net = build_network(cfg, data.num_items, np.random.default_rng(1).normal(size=(51, 8)).astype(np.float32),
                        data.cold_items)
    blocked = net.blocked_classes()
    assert blocked[list(cold_idx)].all() and blocked[0] and int(blocked.sum()) == len(cold_idx) + 1
    net.eval()
    assert net.item_table().vectors.shape[0] == 51
    # Cold items are still targets of the evaluation, in the cold slice.
    _, targets = split_inputs(data, "test")
    report = evaluate(text_knn_scorer(np.eye(51, dtype=np.float32)), data, EvaluationConfig(), split="test",
                      protocols=("full",))
    assert report.slices["cold"]["users"] == int(np.isin(targets, list(cold_idx)).sum())
    assert report.slices["warm"]["users"] + report.slices["cold"]["users"] == data.num_users
