"""The data-quality gate end to end on real Spark and real Great Expectations.

One clean data set must pass; one dirty variant per failure kind must fail on exactly the check meant to
catch it; the Beauty data must pass with its real dirt reported as warnings.
"""
from __future__ import annotations

import json
import re
import random

import pytest

from contract_files import clean_catalog, uniform_log, write_catalog, write_events
from unisem.cli import main
from unisem.config import load_config
from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE
from unisem.quality.baseline import baseline_path, dataset_identity
from unisem.quality.gate import run_gate

pytestmark = pytest.mark.spark


@pytest.fixture
def clean(tmp_path):
    ids, titles, brands = clean_catalog(100)
    cat = write_catalog(tmp_path / "catalog.parquet", ids, titles, brands)
    inter = write_events(tmp_path / "interactions.parquet", uniform_log(ids, 200, 6))
    return ids, titles, brands, cat, inter


def crossed(result, severity="fail"):
    return {c.check for c in result.checks if not c.passed and c.severity == severity}


def test_clean_data_passes_and_writes_every_output(spark, tmp_path, clean):
    *_, cat, inter = clean
    home = tmp_path / "home"
    result = run_gate(load_config(), cat, inter, tmp_path / "gate", home=home)
    assert result.verdict == "pass", [c for c in result.checks if not c.passed]
    assert result.exit_code == 0
    verdict = json.loads(result.verdict_path.read_text())
    assert verdict["verdict"] == "pass" and verdict["failed"] == [] and verdict["warnings"] == []
    check = verdict["checks"][0]
    assert set(check) == {"check", "measure", "severity", "threshold", "observed", "passed"}
    assert verdict["measures"]["interactions"] == 1200 and verdict["measures"]["users"] == 200
    assert verdict["measures"]["catalog_items"] == 100
    assert verdict["measures"]["popularity_kl"] is None  # first run: no baseline yet
    assert {s["suite"]: s["success"] for s in verdict["great_expectations"]} == {
        "catalog_text_quality": True,
        "interaction_log": True,
        "gate_checks": True,
    }
    assert result.data_docs_path.exists() and (tmp_path / "gate" / "data_docs" / "validations").is_dir()
    page = result.report_path.read_text()
    assert "PASS" in page and page.count("data:image/png;base64,") == 4
    # one row per check with both levels and its meaning; drift cannot be measured on the first night
    assert page.count("<td>quality.max_gini</td>") == 1 and "interactions concentrate on few items" in page
    assert page.count("no baseline yet") >= 3
    # Data Docs readable offline: nothing fetched from a CDN, validations named by the run (the gate's parent)
    remote = re.compile(r"""<(?:link|script|img)\b[^>]*(?:href|src)\s*=\s*["']?(?:https?:)?//""", re.I)
    docs = list((tmp_path / "gate" / "data_docs").rglob("*.html"))
    assert docs and not [p for p in docs if remote.search(p.read_text())]
    assert any(tmp_path.name in p.as_posix() for p in docs if "validations" in p.parts)
    assert baseline_path(home, dataset_identity("", cat, inter)).exists()  # an accepted run becomes the baseline
    assert verdict["baseline"]["compared_with"] is None and "no baseline yet" in verdict["baseline"]["note"]


def test_duplicate_ids_fail(spark, tmp_path, clean):
    ids, titles, brands, _, inter = clean
    cat = write_catalog(tmp_path / "dup.parquet", ids + ids[:5], titles + titles[:5], brands + brands[:5])
    result = run_gate(load_config(), cat, inter, tmp_path / "gate", home=tmp_path / "home")
    assert result.verdict == "fail" and result.exit_code == 3
    assert crossed(result) == {"max_duplicate_item_id_share"}
    assert result.measures["duplicate_item_id_share"] == pytest.approx(5 / 105)
    verdict = json.loads(result.verdict_path.read_text())
    assert verdict["checks"][0]["check"] == "max_duplicate_item_id_share"  # failing checks first
    gx = {s["suite"]: s for s in verdict["great_expectations"]}
    assert not gx["catalog_text_quality"]["success"] and gx["gate_checks"]["failed_critical"] >= 1
    assert not (tmp_path / "home" / "quality").exists()  # a failed run never becomes the baseline


def test_empty_titles_fail(spark, tmp_path, clean):
    ids, titles, brands, _, inter = clean
    blanked = [None if j % 5 == 0 else (" " if j % 5 == 1 else t) for j, t in enumerate(titles)]
    cat = write_catalog(tmp_path / "notitle.parquet", ids, blanked, brands)
    result = run_gate(load_config(), cat, inter, tmp_path / "gate", home=tmp_path / "home")
    assert result.verdict == "fail"
    assert "min_title_share" in crossed(result)
    assert result.measures["title_share"] == pytest.approx(0.6)


def test_unknown_items_fail(spark, tmp_path, clean):
    ids, _, _, cat, _ = clean
    events = uniform_log(ids, 200, 6) + [(f"user{u:04d}", f"ghost{u}", 99) for u in range(60)]
    inter = write_events(tmp_path / "ghosts.parquet", events)
    result = run_gate(load_config(), cat, inter, tmp_path / "gate", home=tmp_path / "home")
    assert result.verdict == "fail"
    assert crossed(result) == {"max_unknown_item_share"}
    assert result.measures["unknown_item_share"] == pytest.approx(60 / 1260)
    assert result.measures["unknown_items"] == 60


def test_collapsed_distribution_fails(spark, tmp_path, clean):
    ids, _, _, cat, _ = clean
    rng = random.Random(1)
    events = [(f"user{u:04d}", ids[0] if rng.random() < 0.8 else rng.choice(ids), p) for u in range(200) for p in range(6)]
    inter = write_events(tmp_path / "collapsed.parquet", events)
    result = run_gate(load_config(), cat, inter, tmp_path / "gate", home=tmp_path / "home")
    assert result.verdict == "fail"
    assert "max_top1pct_share" in crossed(result)
    assert result.measures["top1pct_share"] > 0.75 and result.measures["gini"] > 0.75


def test_sudden_drift_against_the_baseline_fails_and_keeps_the_baseline(spark, tmp_path, clean):
    ids, _, _, cat, inter = clean
    home = tmp_path / "home"
    cfg = load_config(None, ["data.name=shop"])  # the same dataset under another file name tonight
    assert run_gate(cfg, cat, inter, tmp_path / "night1", home=home).verdict == "pass"
    before = baseline_path(home, "shop").read_text()
    # Night 2: the same catalog but a thin log (2-3 events per item instead of ~12): the popularity shape moves.
    thin = write_events(tmp_path / "thin.parquet", uniform_log(ids, 90, 3, seed=2))
    result = run_gate(cfg, cat, thin, tmp_path / "night2", home=home)
    assert result.verdict == "fail"
    assert "max_popularity_kl" in crossed(result)
    assert result.measures["popularity_kl"] > 0.5
    assert result.baseline["compared_with"] == str(tmp_path / "night1")
    assert baseline_path(home, "shop").read_text() == before


def test_cli_exit_codes_and_unreadable_input(spark, tmp_path, clean, capsys):
    ids, titles, brands, cat, inter = clean
    out = tmp_path / "gate"
    dup = write_catalog(tmp_path / "dup.parquet", ids + ids[:1], titles + titles[:1], brands + brands[:1])
    assert main(["validate", "--catalog", str(dup), "--interactions", str(inter), "--out", str(out),
                 "--home", str(tmp_path / "home")]) == 3
    printed = capsys.readouterr().out
    assert "quality gate: FAIL" in printed and "fail: duplicate_item_id_share = " in printed
    assert "(max_duplicate_item_id_share)" in printed
    first = (out / "verdict.json").read_text()
    code = main(["validate", "--catalog", str(tmp_path / "missing.parquet"), "--interactions", str(inter),
                 "--out", str(out)])
    assert code == 1
    assert "missing.parquet: the catalog file does not exist" in capsys.readouterr().err
    (tmp_path / "nope.parquet").write_text("garbage")
    assert main(["validate", "--catalog", str(cat), "--interactions", str(tmp_path / "nope.parquet"),
                 "--out", str(out)]) == 1
    assert "nope.parquet: cannot read the interactions as Parquet" in capsys.readouterr().err
    assert (out / "verdict.json").read_text() == first  # the earlier output is untouched
    with pytest.raises(SystemExit) as exit_info:  # a missing argument is an error too: 1, not argparse's 2
        main(["validate", "--catalog", str(cat)])
    assert exit_info.value.code == 1
    assert "--interactions" in capsys.readouterr().err


@pytest.mark.beauty
def test_beauty_passes_with_its_real_dirt_as_warnings(spark, tmp_path, beauty_dir):
    from unisem.data.importers import import_sequence_files

    data = import_sequence_files(beauty_dir, tmp_path / "beauty").out_dir
    result = run_gate(load_config(), data / CATALOG_FILE, data / INTERACTIONS_FILE, tmp_path / "gate",
                      home=tmp_path / "home")
    m = result.measures
    assert result.verdict == "warn", crossed(result)
    assert {"min_title_share", "max_html_share"} <= crossed(result, "warn")
    assert m["catalog_items"] == 12101 and m["users"] == 22363 and m["interactions"] == 198502
    assert m["title_share"] == pytest.approx(1 - 7 / 12101)
    assert m["item_interactions_min"] == 5 and m["item_interactions_median"] == 9
    assert m["top1pct_share"] == pytest.approx(0.105, abs=0.005)
    assert m["top20pct_share"] == pytest.approx(0.581, abs=0.005)
    assert 0.09 < m["html_share"] < 0.2

    # The same files through the feature job: every user (5-core) kept, last item test, second to last valid.
    from unisem.data.dataset import load_features
    from unisem.data.features import build_features

    features = load_features(build_features(load_config(), data / CATALOG_FILE, data / INTERACTIONS_FILE,
                                            tmp_path / "features"))
    assert features.num_items == 12101 and features.num_users == 22363
    first = (beauty_dir / "sequences.txt").read_text().splitlines()[0].split()
    u = features.user_ids.index(first[0])
    ids = features.item_ids
    assert ids[features.test_items[u] - 1] == first[-1] and ids[features.valid_items[u] - 1] == first[-2]
    assert [ids[i - 1] for i in features.histories[u]] == first[1:-2][-50:]


def test_a_run_id_that_reads_like_a_bad_date_still_validates(spark, tmp_path, clean):
    """Data Docs name validations by the run folder; a run id from minute 38 must not be parsed as a time
    zone offset of -38:26 (Great Expectations parses a run name without a run time as a date)."""
    *_, cat, inter = clean
    out = tmp_path / "2026-12-01T12-38-26" / "quality"
    result = run_gate(load_config(), cat, inter, out, home=tmp_path / "home")
    assert result.verdict == "pass" and result.verdict_path.exists()
    assert any("2026-12-01T12-38-26" in p.as_posix() for p in (out / "data_docs").rglob("*.html"))
