"""The run's pages from stage records and run folders: summary.html and compare.html are real pages
(no Markdown in a <pre>, no network assets), with the comparison, the guardrails and the trends over nights."""
from __future__ import annotations

import json
import re
from pathlib import Path

from unisem.home import RunLayout
from unisem.pipeline import stages
from unisem.pipeline.history import night_history
from unisem.pipeline.pages import line_chart
from unisem.pipeline.records import write_record, write_failure
from unisem.pipeline.spec import make_spec

# What a browser would fetch: sources, stylesheets, CSS urls and imports (plain <a> links to MLflow are fine).
ASSET = re.compile(r"""src\s*=\s*["']?https?://|<link[^>]*href\s*=\s*["']?https?://|url\(\s*["']?https?://|@import""",
                   re.I)


def _comparison(delta: float) -> dict:
    entry = {"challenger": 0.3 + delta, "champion": 0.3, "delta": delta, "low": delta - 0.01, "high": delta + 0.01}
    plain = {"challenger": 0.5, "champion": 0.45, "delta": 0.05}
    return {
        "protocols": {"full": {"NDCG@10": entry, "HR@10": plain}, "sampled-99": {"NDCG@10": plain, "HR@10": plain}},
        "slices": {s: {"users": 12, "full": {"NDCG@10": entry, "HR@10": plain},
                       "sampled-99": {"NDCG@10": plain, "HR@10": plain}} for s in ("tail", "cold", "new")},
        "diagnostics": {"challenger": {"variant": "unified", "codebook_usage": [0.9, 0.7], "codebook_size": 16,
                                       "collision_rate": 0.01},
                        "champion": {"variant": "unified", "codebook_usage": [0.8, 0.6], "codebook_size": 16,
                                     "collision_rate": 0.02}},
        "users": 200, "level": 0.95, "resamples": 1000, "new_items": 3,
    }


def _night(home: Path, run_id: str, promoted: bool, delta: float, items: float) -> RunLayout:
    layout = RunLayout.for_run(run_id, home)
    layout.quality.mkdir(parents=True)
    (layout.quality / "verdict.json").write_text(json.dumps(
        {"verdict": "pass", "measures": {"catalog_items": items, "popularity_kl": 0.01, "gini": 0.5,
                                         "title_share": 1.0}}))
    (layout.quality / "report.html").write_text("<html></html>")
    layout.registry.mkdir(parents=True)
    (layout.registry / "promotion.json").write_text(json.dumps({
        "promoted": promoted, "reason": "breached: slice tail" if not promoted else "clear gain",
        "metric": "full/NDCG@10", "challenger_version": run_id[-1], "challenger_value": 0.3 + delta,
        "champion_version": "1", "champion_value": 0.3,
        "interval": {"mean": delta, "low": delta - 0.01, "high": delta + 0.01, "level": 0.95},
        "guardrails": [{"slice": "tail", "users": 12, "challenger": 0.1, "champion": 0.2, "drop": 0.1,
                        "max_drop": 0.02, "breached": not promoted}],
        "comparison": _comparison(delta)}))
    return layout


def _records(layout: RunLayout, promoted: bool) -> None:
    write_record(layout, "validate", {"verdict": "pass", "reasons": [],
                                      "report_path": str(layout.quality / "report.html")}, "t", 12.5)
    write_record(layout, "proceed", {"proceed": True, "verdict": "pass"}, "t", 0.1)
    for s in ("features", "embed", "train"):
        write_record(layout, s, {}, "t", 30.0)
    write_record(layout, "evaluate", {"metrics": {"full/NDCG@10": 0.31, "sampled-99/NDCG@10": 0.6}}, "t", 5.0)
    write_record(layout, "register", {"model_name": "unisem", "version": "2", "model_uri": "models:/unisem/2",
                                      "mlflow_run_id": "", "tracking_uri": "http://mlflow:5000", "reused": False,
                                      "run_url": "http://mlflow:5000/#/experiments/1/runs/abc",
                                      "version_url": "http://mlflow:5000/#/models/unisem/versions/2"}, "t", 4.0)
    promotion = json.loads((layout.registry / "promotion.json").read_text())
    write_record(layout, "promote", promotion, "t", 9.0)


def _assert_real_page(page: str) -> None:
    assert "<pre" not in page.lower()
    assert "| --- |" not in page and "|---|" not in page and "## " not in page  # no Markdown source
    assert not ASSET.search(page), ASSET.search(page)
    assert "<script" not in page.lower()


def test_summary_and_compare_pages_of_a_second_night(tmp_path):
    home = tmp_path / "home"
    _night(home, "2026-03-01T00-00-00", True, 0.05, 300.0)
    second = _night(home, "2026-03-02T00-00-00", False, 0.02, 310.0)
    _records(second, promoted=False)
    spec = make_spec("2026-03-02T00-00-00", home=home)
    out = stages.report(spec)

    summary = Path(out["html_path"]).read_text()
    _assert_real_page(summary)
    assert 'href="compare.html"' in summary and 'href="../quality/report.html"' in summary
    assert 'href="http://mlflow:5000/#/experiments/1/runs/abc"' in summary  # links to the server, no assets
    assert "not promoted" in summary and "breached: slice tail" in summary
    assert "12.5 s" in summary  # per-stage durations
    assert "[+0.0100, +0.0300]" in summary  # the promotion interval

    compare = Path(out["compare_path"]).read_text()
    _assert_real_page(compare)
    assert "sampled-99" in compare and "full" in compare
    assert "+0.0200" in compare and "[+0.0100, +0.0300]" in compare
    for slice_name in ("tail", "cold", "new"):
        assert f"<td>{slice_name}" in compare
    assert "90%, 70% of 16" in compare and "80%, 60% of 16" in compare  # codebook usage of both
    assert compare.count("<svg") == 5  # the models' trend and four gate measures
    assert "2026-03-01T00-00-00" in compare and "2026-03-02T00-00-00" in compare
    assert compare.count('class="badge promoted"') == 1 and compare.count('class="badge refused"') >= 2


def test_summary_of_a_failed_stage_shows_its_error(tmp_path):
    home = tmp_path / "home"
    layout = RunLayout.for_run("r", home)
    write_record(layout, "validate", {"verdict": "pass", "reasons": []}, "t", 1.0)
    write_record(layout, "proceed", {"proceed": True, "verdict": "pass"}, "t", 0.1)
    write_failure(layout, "features", RuntimeError("Spark at spark://m:7077 did not answer <in 60 s>"), "t", 61.0)
    out = stages.report(make_spec("r", home=home))
    page = Path(out["html_path"]).read_text()
    _assert_real_page(page)
    assert "Error in stage features" in page and "did not answer &lt;in 60 s&gt;" in page  # escaped
    assert "1 min 1 s" in page
    assert "compare.html" not in page  # nothing registered: no comparison to link


def test_night_history_keeps_the_last_nights_up_to_the_run(tmp_path):
    home = tmp_path / "home"
    for day in range(1, 5):
        _night(home, f"2026-03-0{day}T00-00-00", day % 2 == 0, 0.01 * day, 300.0 + day)
    (home / "runs" / "quality-2026-03-03T00-00-00" / "quality").mkdir(parents=True)
    rows = night_history(home, "2026-03-03T00-00-00", 2)
    assert [r["run_id"] for r in rows] == ["2026-03-02T00-00-00", "2026-03-03T00-00-00"]
    assert rows[0]["decision"] == "promoted" and rows[1]["decision"] == "refused"
    assert rows[1]["measures"]["catalog_items"] == 303.0 and rows[1]["champion"] == 0.3


def test_line_chart_is_inline_svg_and_skips_missing_values():
    svg = line_chart(["a", "b", "c"], {"challenger": [0.1, None, 0.3], "champion": [None, None, None]}, "t")
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "http" not in svg
    assert "no values yet" in line_chart([], {"x": []}, "empty")


def test_gate_report_has_one_row_per_check_with_both_levels(tmp_path):
    from unisem.config import load_config
    from unisem.quality.checks import evaluate_checks
    from unisem.quality.report import CHECK_MEANINGS, check_rows, write_report

    cfg = load_config()
    measures = {m: 0.0 for m in {c.measure for c in evaluate_checks(cfg.quality, _all_zero(cfg))}}
    measures.update(title_share=0.5, brand_share=0.4, popularity_kl=None, catalog_shrinkage=None,
                    user_count_change=None, median_title_length=20.0, category_share=1.0)
    checks = evaluate_checks(cfg.quality, measures)
    rows = check_rows(checks)
    assert len(rows) == len(checks) // 2 and set(CHECK_MEANINGS) == {r["check"] for r in rows}
    assert [r["state"] for r in rows[:2]] == ["fail", "warn"]
    assert rows[0]["check"] == "min_title_share" and (rows[0]["warn"], rows[0]["fail"]) == (1.0, 0.95)
    by_check = {r["check"]: r for r in rows}
    assert by_check["max_popularity_kl"]["state"] == "no baseline yet"
    page = write_report(tmp_path / "report.html", "fail", checks, measures, [], [], {},
                        offenders={"min_title_share": [{"item_id": "B00X", "value": "<no title>"}]}).read_text()
    assert page.count("<td>quality.min_title_share</td>") == 1 and "B00X: &lt;no title&gt;" in page
    assert page.count("no baseline yet") == 6  # state and observed cells of the three drift checks


def _all_zero(cfg):
    from unisem.quality.checks import threshold_checks

    return {measure: 0.0 for _, measure, _, _ in threshold_checks(cfg.quality)}
