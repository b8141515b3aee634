"""Distribution statistics from count-of-counts histograms, and the check/verdict logic, by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unisem.config import load_config
from unisem.quality import distribution as dist
from unisem.quality.baseline import drift_measures
from unisem.quality.checks import evaluate_checks, failing_first, threshold_checks, verdict


def expand(h):
    return np.repeat(h.values, h.counts)


def test_gini_matches_the_textbook_formula_on_expanded_values():
    h = dist.histogram({0: 2, 1: 3, 4: 1, 10: 1})
    x = np.sort(expand(h))
    n = len(x)
    direct = 2 * np.sum(np.arange(1, n + 1) * x) / (n * x.sum()) - (n + 1) / n
    assert dist.gini(h) == pytest.approx(direct)
    # hand: x = 0,0,1,1,1,4,10, sum 17, sum(i*x) = 3+4+5+24+70 = 106 -> 2*106/(7*17) - 8/7
    assert dist.gini(h) == pytest.approx(212 / 119 - 8 / 7)
    assert dist.gini(dist.histogram({5: 10})) == pytest.approx(0.0)
    assert dist.gini(dist.histogram({0: 99, 1: 1})) == pytest.approx(0.99)


def test_top_share_quantiles_and_share_below():
    h = dist.histogram({1: 90, 10: 9, 100: 1})  # 100 items, 280 interactions
    assert dist.top_share(h, 0.01) == pytest.approx(100 / 280)
    assert dist.top_share(h, 0.05) == pytest.approx((100 + 4 * 10) / 280)
    assert dist.quantile(h, 0.5) == 1 and dist.quantile(h, 0.95) == 10 and dist.quantile(h, 1.0) == 100
    assert dist.quantile(h, 0.0) == 1
    assert dist.share_below(h, 5) == pytest.approx(0.9)


def test_lorenz_and_long_tail_curves():
    h = dist.histogram({1: 2, 2: 1})
    x, y = dist.lorenz_curve(h)
    assert x.tolist() == pytest.approx([0, 2 / 3, 1]) and y.tolist() == pytest.approx([0, 0.5, 1])
    ranks, values = dist.long_tail(h)
    assert ranks.tolist() == [1, 1, 2, 3] and values.tolist() == [2, 2, 1, 1]


def test_log2_buckets_and_kl():
    h = dist.histogram({0: 1, 1: 1, 2: 1, 3: 1, 4: 1})
    shares = dist.log2_bucket_shares(h, buckets=5)
    assert shares == pytest.approx([0.2, 0.2, 0.4, 0.2, 0.0])
    assert dist.kl_divergence(shares, shares) == pytest.approx(0.0, abs=1e-12)
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert dist.kl_divergence(p, q, eps=0) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))


def test_drift_measures_against_a_baseline():
    base = {"catalog_items": 100, "users": 50, "popularity_buckets": [0, 1.0]}
    m = drift_measures(base, {"catalog_items": 60, "users": 80}, {1: 60})
    assert m["catalog_shrinkage"] == pytest.approx(0.4) and m["user_count_change"] == pytest.approx(0.6)
    assert m["popularity_kl"] == pytest.approx(0.0, abs=1e-4)
    assert drift_measures(None, {}, {}) == {"popularity_kl": None, "catalog_shrinkage": None, "user_count_change": None}


def test_checks_levels_and_verdict():
    cfg = load_config(None, ["quality.max_html_share=[0.01, 0.2]", "quality.min_title_share=[1.0, 0.95]"])
    names = {c for c, *_ in threshold_checks(cfg.quality)}
    measures = {m: None for _, m, _, _ in threshold_checks(cfg.quality)}
    assert verdict(evaluate_checks(cfg.quality, measures)) == "pass"  # nothing measured, nothing crossed
    measures.update(html_share=0.1, title_share=0.999)
    results = evaluate_checks(cfg.quality, measures)
    assert verdict(results) == "warn"
    crossed = {(r.check, r.severity) for r in results if not r.passed}
    assert crossed == {("max_html_share", "warn"), ("min_title_share", "warn")}
    measures.update(title_share=0.9)
    results = evaluate_checks(cfg.quality, measures)
    assert verdict(results) == "fail"
    assert (failing_first(results)[0].check, failing_first(results)[0].severity) == ("min_title_share", "fail")
    assert "max_popularity_kl" in names and len(results) == 2 * len(names)
