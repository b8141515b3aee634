"""Full-ranking and sampled protocols: exclusions, ties, negatives, perfect and random scorers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from evaluation_datasets import cyclic_dataset, make_dataset, next_item_scorer

from unisem.config.schema import EvaluationConfig
from unisem.evaluate.protocols import (
    EvaluationReport,
    cached_negatives,
    compute_ranks,
    evaluate,
    protocol_negatives,
    split_metric_name,
)

CFG = EvaluationConfig()


def fixed_scorer(row: list[float]):
    return lambda x: torch.tensor([row] * x.shape[0], dtype=torch.float32)


def test_full_ranking_excludes_padding_and_seen_items_but_not_the_target():
    # Items 1..5; scores: padding 100 (must never count), 1: 50, 2: 40, 3: 10, 4: 20, 5: 5.
    scores = fixed_scorer([100.0, 50.0, 40.0, 10.0, 20.0, 5.0])
    # valid split: history [1, 2] predicts 3 -> only item 4 beats it once 1 and 2 are excluded.
    data = make_dataset([[1, 2, 3, 5]], num_items=5)
    ranks = compute_ranks(scores, data, CFG, "valid", protocols=("full",))
    assert ranks["full"].tolist() == [1]
    # The same user on the test split: input [1, 2, 3] predicts 5; 3 is seen now, only 4 beats 5.
    assert compute_ranks(scores, data, CFG, "test", protocols=("full",))["full"].tolist() == [1]
    # A target the user has seen before is still ranked: history [3, 1] predicts 3; 2 and 4 beat it.
    again = make_dataset([[3, 1, 3, 4]], num_items=5)
    assert compute_ranks(scores, again, CFG, "valid", protocols=("full",))["full"].tolist() == [2]


def test_seen_items_beyond_max_len_are_still_excluded():
    # The model reads only the last 2 items, but the user consumed all of 1, 2, 4 - all excluded.
    scores = fixed_scorer([0.0, 50.0, 40.0, 10.0, 20.0, 5.0])
    data = make_dataset([[4, 1, 2, 3, 5]], num_items=5)
    assert compute_ranks(scores, data, CFG, "valid", max_len=2, protocols=("full",))["full"].tolist() == [0]


def test_ties_and_nan_count_against_the_target():
    data = make_dataset([[1, 2, 3, 5]], num_items=8)
    const = compute_ranks(fixed_scorer([1.0] * 9), data, CFG, "valid", protocols=("full", "sampled-3"))
    # 8 items - 2 seen - the target = 5 candidates, all tied: worst rank. Sampled: all 3 negatives tie.
    assert const["full"].tolist() == [5]
    assert const["sampled-3"].tolist() == [3]
    nan_target = compute_ranks(
        fixed_scorer([0.0, 1.0, 1.0, math.nan, 0.5, 0.2, -9.0, math.nan, -math.inf]), data, CFG, "valid",
        protocols=("full",),
    )
    assert nan_target["full"].tolist() == [5]
    # A NaN candidate never ranks above a real target: only items 5, 7 and the tie 8 beat item 3 here.
    nan_candidate = compute_ranks(
        fixed_scorer([0.0, 1.0, 1.0, 0.5, math.nan, 0.7, 0.2, 0.9, 0.5]), data, CFG, "valid", protocols=("full",)
    )
    assert nan_candidate["full"].tolist() == [3]


def test_sampled_negatives_never_touch_the_users_items_and_are_fixed_by_the_seed():
    data = cyclic_dataset(num_users=300, num_items=150)
    neg = protocol_negatives(data, 99, seed=5)
    assert neg.shape == (300, 99)
    for u in range(data.num_users):
        touched = set(data.histories[u].tolist()) | {int(data.valid_items[u]), int(data.test_items[u])}
        row = neg[u].tolist()
        assert len(set(row)) == 99, "negatives are drawn without replacement"
        assert not touched & set(row)
        assert min(row) >= 1 and max(row) <= 150
    assert np.array_equal(neg, protocol_negatives(data, 99, seed=5))
    assert not np.array_equal(neg, protocol_negatives(data, 99, seed=6))
    assert cached_negatives(data, 99, 5) is cached_negatives(data, 99, 5)
    assert np.array_equal(cached_negatives(data, 99, 5), neg)


def test_sampled_negatives_are_uniform_over_untouched_items():
    # One user who touched items 1..3 of 10: every other item should be drawn about equally often.
    data = make_dataset([[1, 2, 3]] * 4000, num_items=10)
    neg = protocol_negatives(data, 2, seed=0)
    counts = np.bincount(neg.ravel(), minlength=11)
    assert counts[:4].sum() == 0
    expected = 4000 * 2 / 7
    assert np.all(np.abs(counts[4:] - expected) < 0.1 * expected)


def test_small_catalog_uses_every_untouched_item_and_warns():
    data = make_dataset([[1, 2, 3, 4]], num_items=6)
    with pytest.warns(UserWarning, match="fewer than 99 untouched"):
        neg = protocol_negatives(data, 99, seed=1)
    assert sorted(neg[0][neg[0] > 0].tolist()) == [5, 6]
    assert (neg[0] > 0).sum() == 2


def test_ranks_do_not_depend_on_the_batch_size():
    data = cyclic_dataset()
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(301, 301, generator=gen)  # a deterministic scorer: a row per last item

    def score(x):
        return table[x[:, -1]]

    a = compute_ranks(score, data, CFG, "test", batch_size=7)
    b = compute_ranks(score, data, CFG, "test", batch_size=512)
    assert a.keys() == b.keys() == {"full", "sampled-99"}
    for p in a:
        assert np.array_equal(a[p], b[p])


def test_perfect_scorer_gets_hr1_of_one_under_both_protocols():
    data = cyclic_dataset()
    for split in ("valid", "test"):
        report = evaluate(next_item_scorer(300), data, CFG, split=split)
        assert report.protocols["full"]["HR@1"] == 1.0
        assert report.protocols["sampled-99"]["HR@1"] == 1.0
        assert report.metric("full/MRR") == 1.0


def test_random_scorer_gets_chance_level():
    data = cyclic_dataset(num_users=3000, num_items=400, seed=1)
    gen = torch.Generator().manual_seed(3)
    report = evaluate(lambda x: torch.rand(x.shape[0], 401, generator=gen), data, CFG, slices=False)
    # Sampled-99: the target is uniformly placed among 100 -> HR@K = K/100.
    for k in (1, 5, 10, 20):
        assert report.protocols["sampled-99"][f"HR@{k}"] == pytest.approx(k / 100, abs=0.02)
    # Full: about 392 candidates -> HR@10 is about 10/393.
    assert report.protocols["full"]["HR@10"] == pytest.approx(10 / 393, abs=0.01)


def test_report_names_and_json():
    data = cyclic_dataset(num_users=50, num_items=200)
    report = evaluate(next_item_scorer(200), data, CFG, protocols=("full", "sampled-99"))
    assert isinstance(report, EvaluationReport)
    assert report.users == 50 and report.split == "valid"
    flat = report.flat()
    assert "full/NDCG@10" in flat and "sampled-99/NDCG@10" in flat
    assert not any(k.startswith("sampled/") or "/" not in k for k in flat)
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON: empty slices are null
    assert d["metrics"]["full/HR@1"] == 1.0
    assert set(d["slices"]) == {"warm", "cold", "head", "torso", "tail"}
    assert d["slices"]["cold"]["users"] == 0 and d["slices"]["cold"]["full"]["HR@1"] is None


def test_bad_inputs_are_named():
    data = cyclic_dataset(num_users=5, num_items=150)
    with pytest.raises(ValueError, match=r"expected a tensor \[5, 151\]"):
        compute_ranks(lambda x: torch.zeros(x.shape[0], 150), data, CFG)
    with pytest.raises(ValueError, match="unknown evaluation protocol 'sampled'"):
        compute_ranks(next_item_scorer(150), data, CFG, protocols=("sampled",))
    with pytest.raises(ValueError, match="'<protocol>/<metric>'"):
        split_metric_name("NDCG@10")
    with pytest.raises(ValueError, match="split must be"):
        compute_ranks(next_item_scorer(150), data, CFG, split="train")
    broken = make_dataset([[1, 2, 3, 99]], num_items=5)
    with pytest.raises(ValueError, match=r"user 'u0' \(index 0\) .* item index 99"):
        compute_ranks(fixed_scorer([0.0] * 6), broken, CFG, protocols=("full",))


def test_negatives_stay_valid_when_blocks_are_small(monkeypatch):
    import unisem.evaluate.protocols as protocols

    monkeypatch.setattr(protocols, "NEGATIVE_BLOCK_USERS", 7)
    monkeypatch.setattr(protocols, "NEGATIVE_BLOCK_KEYS", 1000)  # 6 users per block in the exact draw
    data = cyclic_dataset(num_users=50, num_items=150)
    neg = protocols.protocol_negatives(data, 99, seed=5)
    for u in range(data.num_users):
        touched = set(data.histories[u].tolist()) | {int(data.valid_items[u]), int(data.test_items[u])}
        assert len(set(neg[u].tolist()) - touched - {0}) == 99


def test_users_who_touched_much_of_the_catalog_get_an_exact_uniform_draw():
    # 15 untouched items of 20, 12 negatives: rejection sampling often runs short, the exact draw takes over.
    # Every untouched item must be chosen with probability 12 / 15 either way.
    data = make_dataset([[1, 2, 3, 4, 5]] * 4000, num_items=20)
    neg = protocol_negatives(data, 12, seed=0)
    assert (neg > 5).all() and all(len(set(row)) == 12 for row in neg.tolist())
    counts = np.bincount(neg.ravel(), minlength=21)[6:]
    assert np.all(np.abs(counts - 4000 * 12 / 15) < 0.05 * 4000 * 12 / 15)


def test_scoring_keeps_every_thread_and_the_thread_count_is_restored():
    data = cyclic_dataset(num_users=40, num_items=150)
    before = torch.get_num_threads()
    seen_by_scorer = []
    perfect = next_item_scorer(150)

    def score(x):
        seen_by_scorer.append(torch.get_num_threads())
        return perfect(x)

    compute_ranks(score, data, CFG, batch_size=16)
    assert seen_by_scorer == [before] * 3
    assert torch.get_num_threads() == before
