"""Ranking metrics against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unisem.evaluate.metrics import hit_rate, metric_names, metrics_from_ranks, mrr, ndcg


def test_hand_computed_case():
    # Four users; targets ranked 1st, 2nd, 6th and 100th (0-based ranks 0, 1, 5, 99).
    ranks = np.array([0, 1, 5, 99])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    assert m["HR@1"] == pytest.approx(1 / 4)
    assert m["HR@5"] == pytest.approx(2 / 4)
    assert m["HR@10"] == pytest.approx(3 / 4)
    # NDCG: 1/log2(2) = 1, 1/log2(3) = 0.63093, 1/log2(7) = 0.35621
    assert m["NDCG@1"] == pytest.approx(1 / 4)
    assert m["NDCG@5"] == pytest.approx((1 + 0.6309297535714575) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 0.6309297535714575 + 0.3562071871080222) / 4)
    # MRR over the whole list: (1 + 1/2 + 1/6 + 1/100) / 4
    assert m["MRR"] == pytest.approx((1 + 0.5 + 1 / 6 + 0.01) / 4)
    assert list(m) == ["HR@1", "HR@5", "HR@10", "NDCG@1", "NDCG@5", "NDCG@10", "MRR"]


def test_k_boundary_is_exclusive():
    # rank 10 (the 11th place) is outside the top 10, rank 9 inside.
    assert hit_rate(np.array([9]), 10) == 1.0
    assert hit_rate(np.array([10]), 10) == 0.0
    assert ndcg(np.array([10]), 10) == 0.0
    assert ndcg(np.array([9]), 10) == pytest.approx(1 / math.log2(11))


def test_ndcg_at_1_equals_hr_at_1_and_mrr_of_perfect():
    ranks = np.array([0, 0, 3])
    assert ndcg(ranks, 1) == hit_rate(ranks, 1) == pytest.approx(2 / 3)
    assert mrr(np.zeros(5, dtype=int)) == 1.0


def test_empty_is_nan_not_zero():
    m = metrics_from_ranks(np.array([], dtype=np.int64), ks=(10,))
    assert all(math.isnan(v) for v in m.values())


@pytest.mark.parametrize("bad", [np.array([-1, 0]), np.zeros((2, 2))])
def test_bad_ranks_are_refused(bad):
    with pytest.raises(ValueError):
        metrics_from_ranks(bad, ks=(1,))


def test_bad_k_is_refused():
    with pytest.raises(ValueError, match="K must be"):
        hit_rate(np.array([0]), 0)


def test_metric_names_match_keys():
    assert metric_names((10, 1, 10)) == tuple(metrics_from_ranks(np.array([3]), (10, 1)))
