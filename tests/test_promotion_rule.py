"""The promotion rule and its bootstrap on hand-made per-user arrays (no MLflow, no model)."""
from __future__ import annotations

import numpy as np
import pytest

from unisem.evaluate.bootstrap import paired_bootstrap
from unisem.evaluate.comparison import compare_ranks
from unisem.evaluate.metrics import per_user_values
from unisem.registry.promotion import promotion_rule

METRIC = "full/NDCG@10"


def test_paired_bootstrap_of_a_constant_difference_is_that_constant():
    a = np.array([0.5, 0.2, 0.9, 0.0])
    iv = paired_bootstrap(a + 0.1, a, resamples=200, level=0.9, seed=1)
    assert iv.mean == pytest.approx(0.1) and iv.low == pytest.approx(0.1) and iv.high == pytest.approx(0.1)
    assert (iv.users, iv.resamples, iv.level) == (4, 200, 0.9)


def test_paired_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(300)
    one, two = paired_bootstrap(a, b, 500, 0.95, 7), paired_bootstrap(a, b, 500, 0.95, 7)
    assert one == two
    assert one.low < one.mean < one.high
    # a wider level gives a wider interval from the same resamples
    wide = paired_bootstrap(a, b, 500, 0.99, 7)
    assert wide.low <= one.low and wide.high >= one.high
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=1.0)


def test_per_user_values_average_to_the_metrics():
    ranks = np.array([0, 1, 3, 12])
    assert per_user_values(ranks, "NDCG@10").tolist() == pytest.approx([1.0, 1 / np.log2(3), 1 / np.log2(5), 0.0])
    assert per_user_values(ranks, "HR@5").tolist() == [1.0, 1.0, 1.0, 0.0]
    assert per_user_values(ranks, "MRR").tolist() == pytest.approx([1.0, 0.5, 0.25, 1 / 13])
    with pytest.raises(ValueError, match="unknown metric"):
        per_user_values(ranks, "AUC")


def _users(n: int, seed: int) -> np.ndarray:
    """Per-user NDCG-like values: most users 0, some hits."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.4, rng.random(n), 0.0)


def test_a_tiny_noisy_gain_is_refused():
    champion = _users(400, 1)
    # the same users, half of them better by 0.1005 and half worse by 0.0995: on average +0.0005
    challenger = champion + np.where(np.arange(400) % 2 == 0, 0.1005, -0.0995)
    assert challenger.mean() > champion.mean()  # the point estimate alone would promote
    rule = promotion_rule(challenger, champion, METRIC, 0.0, resamples=1000, seed=3)
    assert not rule.promoted
    assert rule.interval.low <= 0.0 < rule.interval.high
    assert "lower bound is not above" in rule.reason and "champion stays" in rule.reason


def test_a_clear_gain_is_promoted():
    champion = _users(400, 1)
    challenger = np.minimum(champion + 0.05, 1.0)
    tail = np.zeros(400, dtype=bool)
    tail[:50] = True
    rule = promotion_rule(challenger, champion, METRIC, 0.01, {"tail": tail}, max_drop=0.02, resamples=500, seed=3)
    assert rule.promoted, rule.reason
    assert rule.interval.low > 0.01 and "promoted" in rule.reason
    assert [g.slice for g in rule.guardrails] == ["tail"] and not rule.guardrails[0].breached


def test_a_guardrail_breach_is_refused_naming_the_slice():
    champion = _users(400, 1)
    challenger = np.minimum(champion + 0.08, 1.0)
    cold = np.zeros(400, dtype=bool)
    cold[:40] = True
    champion[cold] = 0.6
    challenger[cold] = 0.1  # wins overall, collapses on cold items
    empty = np.zeros(400, dtype=bool)
    rule = promotion_rule(challenger, champion, METRIC, 0.0, {"tail": empty, "cold": cold}, max_drop=0.05,
                          resamples=500, seed=3)
    assert rule.interval.low > 0.0  # the overall gain is clear
    assert not rule.promoted
    assert "guardrail breached" in rule.reason and "slice cold" in rule.reason and "tail" not in rule.reason
    by_slice = {g.slice: g for g in rule.guardrails}
    assert by_slice["cold"].breached and by_slice["cold"].drop == pytest.approx(0.5)
    assert by_slice["tail"].users == 0 and by_slice["tail"].drop is None and not by_slice["tail"].breached


def test_without_a_champion_the_first_model_is_promoted():
    rule = promotion_rule(np.array([0.5, 0.0]), None, METRIC)
    assert rule.promoted and rule.interval is None and "first model" in rule.reason


def test_compare_ranks_gives_both_models_deltas_and_slice_intervals():
    a = {"full": np.array([0, 2, 30]), "sampled-99": np.array([0, 0, 1])}
    b = {"full": np.array([1, 2, 40]), "sampled-99": np.array([0, 1, 1])}
    out = compare_ranks(a, b, (1, 10), {"tail": np.array([False, True, True]), "cold": np.zeros(3, bool)},
                        "full/NDCG@10", resamples=50, seed=0)
    hr1 = out["protocols"]["full"]["HR@1"]
    assert hr1["challenger"] == pytest.approx(1 / 3) and hr1["champion"] == 0.0 and hr1["delta"] == pytest.approx(1 / 3)
    assert hr1["low"] <= hr1["delta"] <= hr1["high"]
    assert out["slices"]["tail"]["users"] == 2 and "low" in out["slices"]["tail"]["full"]["NDCG@10"]
    assert "low" not in out["slices"]["tail"]["full"]["HR@1"]
    assert out["slices"]["cold"]["full"]["MRR"]["challenger"] is None
