"""Cold-start and popularity slices of the evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from evaluation_datasets import make_dataset

from unisem.config.schema import EvaluationConfig
from unisem.evaluate.protocols import evaluate
from unisem.evaluate.slices import item_popularity, popularity_bands, slice_masks


def test_popularity_bands_hand_computed():
    # Items 1..5 with 5, 3, 1, 1, 0 training interactions (10 in all), head 50%, tail 20%.
    # Head: shortest prefix reaching 5 -> item 1. Tail: longest suffix holding <= 2 -> items 3, 4, 5.
    bands = popularity_bands(np.array([0, 5, 3, 1, 1, 0]), head_share=0.5, tail_share=0.2)
    assert bands.tolist() == ["", "head", "torso", "tail", "tail", "tail"]
    # Order among equal counts is by item index; unseen items are tail even with tail_share 0.
    bands = popularity_bands(np.array([0, 2, 2, 2, 2, 0]), head_share=0.5, tail_share=0.0)
    assert bands.tolist() == ["", "head", "head", "torso", "torso", "tail"]


def test_popularity_bands_refuse_overlapping_shares():
    with pytest.raises(ValueError, match="head_share.*tail_share"):
        popularity_bands(np.array([0, 1, 2]), head_share=0.7, tail_share=0.4)


def test_item_popularity_counts_training_histories_only():
    data = make_dataset([[1, 1, 2, 3, 4], [2, 1, 5, 6]], num_items=6)
    # histories: [1, 1, 2] and [2, 1]; valid/test items are not training interactions.
    assert item_popularity(data).tolist() == [0, 3, 2, 0, 0, 0, 0]


def test_slices_partition_users_and_cold_slice_follows_the_target():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 41, size=int(rng.integers(4, 10))).tolist() for _ in range(300)]
    data = make_dataset(seqs, num_items=40, cold=(7, 8))
    cfg = EvaluationConfig()
    for split, targets in (("valid", data.valid_items), ("test", data.test_items)):
        masks = slice_masks(data, cfg, split)
        bands = np.stack([masks["head"], masks["torso"], masks["tail"]])
        assert np.all(bands.sum(axis=0) == 1), "head/torso/tail partition the users"
        assert np.array_equal(masks["cold"], np.isin(targets, [7, 8]))
        assert masks["cold"].any()
        assert np.array_equal(masks["warm"], ~masks["cold"]), "warm/cold partition the users"

    gen = torch.Generator().manual_seed(0)
    report = evaluate(
        lambda x: torch.rand(x.shape[0], 41, generator=gen), data, cfg, split="test", protocols=("full", "sampled-20")
    )
    s = report.slices
    assert s["head"]["users"] + s["torso"]["users"] + s["tail"]["users"] == report.users == 300
    assert s["cold"]["users"] == int(np.isin(data.test_items, [7, 8]).sum())
    assert s["warm"]["users"] + s["cold"]["users"] == report.users
    # A slice's metrics are the metrics of its users' ranks.
    mask = slice_masks(data, cfg, "test")["tail"]
    assert s["tail"]["full"]["MRR"] == pytest.approx(np.mean(1.0 / (report.ranks["full"][mask] + 1)))
    assert set(s["tail"]) == {"full", "sampled-20", "users"}
