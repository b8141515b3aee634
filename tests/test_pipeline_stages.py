"""The pipeline's own logic around the stage libraries: run ids, param overrides, stage records, the run
summary, the gate decision, the cluster switch. The libraries themselves run for real in test_pipeline_e2e."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from unisem.config import load_config
from unisem.home import RunLayout
from unisem.pipeline import cluster, stages
from unisem.pipeline.records import read_records, record_path, recorded, recorded_outputs, write_record
from unisem.pipeline.spec import (
    RunSpec,
    make_spec,
    overrides_from_params,
    run_id_for,
    spec_from_params,
    values_from_params,
)
from unisem.quality.gate import gate_reasons
from unisem.pipeline.summary import FAILED, INCOMPLETE, STOPPED_AT_GATE, SUCCEEDED, build_summary, render_markdown


def test_run_id_from_logical_date_is_stable_and_filesystem_safe():
    assert run_id_for(datetime(2026, 11, 28, tzinfo=timezone.utc)) == "2026-11-28T00-00-00"
    assert run_id_for("2026-11-28T19:05:07+00:00") == "2026-11-28T19-05-07"
    assert run_id_for("2026-11-28T20:05:07+01:00") == "2026-11-28T19-05-07"  # UTC
    assert run_id_for("2026-11-28") == "2026-11-28T00-00-00"
    assert run_id_for("manual__2026-11-28T19:01:48.777+00:00:x") == "manual__2026-11-28T19-01-48.777-00-00-x"
    with pytest.raises(ValueError):
        run_id_for("///")


def test_params_become_typed_values_and_empty_params_leave_the_config_alone(tmp_path):
    params = {"catalog": "/d/c.parquet", "interactions": "/d/i", "spark_master": "", "ray_address": " ",
              "mlflow_uri": "http://mlflow:5000", "overrides": ["training.max_epochs=2"], "config_file": ""}
    assert overrides_from_params(params) == ("training.max_epochs=2",)
    assert values_from_params(params) == (
        ("data.catalog", "/d/c.parquet"), ("data.interactions", "/d/i"), ("registry.tracking_uri", "http://mlflow:5000"),
    )
    spec = spec_from_params(params, datetime(2026, 1, 2, tzinfo=timezone.utc), home=tmp_path)
    assert spec.run_id == "2026-01-02T00-00-00" and spec.config_path is None and spec.home == str(tmp_path)
    cfg = spec.config()
    assert cfg.data.catalog == "/d/c.parquet" and cfg.training.max_epochs == 2
    assert cfg.registry.tracking_uri == "http://mlflow:5000"
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # No logical date (a manual Airflow 3 run): the Airflow run id names the folder.
    assert spec_from_params({}, None, "manual__x:1", home=tmp_path).run_id == "manual__x-1"


def test_a_path_with_yaml_special_characters_is_kept_verbatim_by_params_and_by_set(tmp_path):
    """``shop #2/...`` read as YAML is ``shop`` (the rest a comment) and ``a: b.parquet`` a mapping."""
    from unisem.cli import build_parser, config_from_args

    odd = "/d/shop #2/a: b.parquet"
    spec = spec_from_params({"catalog": odd, "interactions": "/d/i #1"}, "2026-01-02", home=tmp_path)
    assert spec.config().data.catalog == odd and spec.config().data.interactions == "/d/i #1"
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # through an XCom
    # The same spec as a job's --set arguments, parsed by the CLI as any unisem command would.
    args = build_parser().parse_args(["validate", "--catalog", "c", "--interactions", "i", "--out", "o",
                                      *spec.config_args()])
    assert config_from_args(args).data.catalog == odd
    # --set keeps YAML for the settings that need it, and quotes still work for a string.
    cfg = load_config(None, ["training.lr=0.5", "evaluation.ks=[5, 10]", 'data.name="x #1"', f"data.catalog={odd}"])
    assert cfg.training.lr == 0.5 and cfg.evaluation.ks == (5, 10) and cfg.data.name == "x #1"
    assert cfg.data.catalog == odd
    assert spec.without("data.catalog").config().data.catalog == ""


def test_spec_cli_args_round_trip_through_unisem_stage_arguments(tmp_path):
    spec = make_spec("r1", "/c.yaml", ["a.b=1", "c.d=x y"], tmp_path)
    assert spec.cli_args() == ["--run-id", "r1", "--home", str(tmp_path), "--config", "/c.yaml",
                               "--set", "a.b=1", "--set", "c.d=x y"]
    assert spec.config_args() == ["--config", "/c.yaml", "--set", "a.b=1", "--set", "c.d=x y"]
    assert make_spec("r1", home=tmp_path).config_args() == []


def test_recorded_keeps_results_and_errors(tmp_path):
    layout = RunLayout(tmp_path / "run")
    assert recorded(layout, "features", lambda: {"features_dir": "/x"}) == {"features_dir": "/x"}

    def boom():
        raise ValueError("catalog.parquet: row 3: field item_id is empty")

    with pytest.raises(ValueError):
        recorded(layout, "embed", boom)
    recs = read_records(layout)
    assert recs["features"]["status"] == "ok" and recs["features"]["outputs"] == {"features_dir": "/x"}
    assert recs["embed"]["status"] == "failed"
    assert recs["embed"]["error"] == "ValueError: catalog.parquet: row 3: field item_id is empty"
    assert recorded_outputs(layout) == {"features_dir": "/x"}  # failed stages add nothing
    record_path(layout, "train").write_text("{not json")
    assert read_records(layout)["train"]["status"] == "failed"


def _ok(layout, stage, **outputs):
    write_record(layout, stage, outputs)


def test_summary_of_a_successful_run(tmp_path):
    layout = RunLayout(tmp_path / "run")
    _ok(layout, "validate", verdict="warn", reasons=["warn: min_brand_share (observed 0.4)"], report_path="/q.html")
    _ok(layout, "proceed", proceed=True, verdict="warn")
    for s in ("features", "embed", "train"):
        _ok(layout, s)
    _ok(layout, "evaluate", metrics={"full/NDCG@10": 0.1234}, metrics_path="/m.json")
    _ok(layout, "register", model_name="unisem", version="3", model_uri="models:/unisem/3", mlflow_run_id="abc",
        tracking_uri="sqlite:///x", reused=False)
    _ok(layout, "promote", promoted=True, reason="0.1234 > 0.1000")
    assert build_summary("run", read_records(layout))["status"] == INCOMPLETE  # recommend has not run yet
    _ok(layout, "recommend", path="/r", published="/p", users=5, rows=50, fallback_users=0, model_version="3")
    summary = build_summary("run", read_records(layout))
    assert summary["status"] == SUCCEEDED and summary["failed_stage"] is None
    assert summary["recommendations"] == {"path": "/r", "published": "/p", "users": 5, "rows": 50,
                                          "fallback_users": 0, "model_version": "3"}
    assert summary["gate"] == {"verdict": "warn", "reasons": ["warn: min_brand_share (observed 0.4)"],
                               "report": "/q.html", "verdict_file": None}
    assert summary["model"]["version"] == "3" and summary["promotion"]["promoted"] is True
    md = render_markdown(summary)
    assert "| full/NDCG@10 | 0.1234 |" in md and "promoted to champion: 0.1234 > 0.1000" in md
    assert "unisem version 3 (models:/unisem/3)" in md
    assert "top-K for 5 users (0 by the fallback) with champion version 3: /r" in md


def test_summary_of_a_run_stopped_at_the_gate_says_why(tmp_path):
    layout = RunLayout(tmp_path / "run")
    _ok(layout, "validate", verdict="fail", reasons=["fail: min_title_share (observed 0.5, levels [1.0, 0.95])"])
    _ok(layout, "proceed", proceed=False, verdict="fail")
    summary = build_summary("run", read_records(layout))
    assert summary["status"] == STOPPED_AT_GATE
    assert summary["stages"]["train"] == "skipped" and summary["model"] == {} and summary["promotion"] == {}
    md = render_markdown(summary)
    assert "stopped at the quality gate" in md and "fail: min_title_share" in md


def test_summary_names_the_failed_stage_and_an_unfinished_run(tmp_path):
    layout = RunLayout(tmp_path / "run")
    _ok(layout, "validate", verdict="pass")
    _ok(layout, "proceed", proceed=True)
    _ok(layout, "features")
    recorded_error = RuntimeError("out of memory")
    from unisem.pipeline.records import write_failure

    write_failure(layout, "embed", recorded_error)
    summary = build_summary("run", read_records(layout))
    assert summary["status"] == FAILED and summary["failed_stage"] == "embed"
    assert summary["error"] == "RuntimeError: out of memory" and summary["stages"]["train"] == "not run"
    (layout.pipeline / "embed.json").unlink()
    assert build_summary("run", read_records(layout))["status"] == INCOMPLETE
    # The quality-report DAG only expects validation.
    assert build_summary("run", read_records(layout), expected=("validate",))["status"] == SUCCEEDED


@pytest.mark.parametrize("verdict,proceed", [("pass", True), ("warn", True), ("fail", False)])
def test_proceed_stops_only_on_fail(tmp_path, verdict, proceed):
    spec = make_spec("r", home=tmp_path)
    out = stages.proceed(spec, {"verdict": verdict, "reasons": ["x"]})
    assert out == {"proceed": proceed, "verdict": verdict, "reasons": ["x"]}
    assert read_records(spec.layout())["proceed"]["outputs"]["proceed"] is proceed


def test_proceed_without_a_verdict_fails_and_records_why(tmp_path):
    spec = make_spec("r", home=tmp_path)
    with pytest.raises(stages.StageError, match="'verdict' is missing"):
        stages.proceed(spec, {})
    assert read_records(spec.layout())["proceed"]["status"] == "failed"


def test_gate_reasons_from_a_verdict_file():
    def check(name, severity, threshold, observed, passed):
        return {"check": name, "measure": name[4:], "severity": severity, "threshold": threshold,
                "observed": observed, "passed": passed}

    verdict = {"verdict": "fail", "checks": [
        check("min_brand_share", "warn", 0.5, 0.4, False),
        check("min_brand_share", "fail", 0.0, 0.4, True),
        check("min_title_share", "warn", 1.0, 0.5, False),
        check("min_title_share", "fail", 0.95, 0.5, False),
        check("max_html_share", "warn", 0.01, 0.0, True),
        check("max_gini", "fail", 0.99, 0.995, False),
    ]}
    assert gate_reasons(verdict) == [
        "fail: title_share = 0.5, below the minimum 0.95 (min_title_share)",
        "fail: gini = 0.995, above the maximum 0.99 (max_gini)",
        "warn: brand_share = 0.4, below the minimum 0.5 (min_brand_share)",
    ]
    assert gate_reasons({"verdict": "pass", "checks": []}) == []
    failed = {"suite": "catalog_text_quality", "expectation": "expect_column_value_lengths_to_be_between(title)",
              "severity": "warning", "unexpected_count": 1}
    assert gate_reasons({"verdict": "warn", "checks": [], "expectations_failed": [failed]}) == [
        "warn: expectation catalog_text_quality/expect_column_value_lengths_to_be_between(title) failed on 1 rows"
    ]
    # With examples (what `unisem validate` prints): up to three offending ids of that check.
    verdict["offenders"] = {"max_gini": [{"item_id": "i1", "value": 1}, {"item_id": "i2", "value": 2}]}
    assert gate_reasons(verdict, examples=True)[1] == (
        "fail: gini = 0.995, above the maximum 0.99 (max_gini); e.g. item_id 'i1', 'i2'")
    assert gate_reasons(verdict)[1] == "fail: gini = 0.995, above the maximum 0.99 (max_gini)"


def test_resolve_inputs_wants_both_paths_and_existing_files(tmp_path):
    from unisem.config import replace_in, UnisemConfig

    cfg = replace_in(UnisemConfig(), data={"catalog": str(tmp_path / "c.parquet")})
    with pytest.raises(stages.StageError, match="given together"):
        stages.resolve_inputs(cfg, tmp_path)
    cfg = replace_in(cfg, data={"interactions": str(tmp_path / "i.parquet")})
    with pytest.raises(FileNotFoundError, match="data.catalog"):
        stages.resolve_inputs(cfg, tmp_path)


def test_previous_features_is_the_latest_earlier_run_with_features(tmp_path):
    for run in ("2026-01-01T00-00-00", "2026-01-02T00-00-00", "2026-01-04T00-00-00"):
        (tmp_path / "runs" / run / "features").mkdir(parents=True)
        (tmp_path / "runs" / run / "features" / "manifest.json").write_text("{}")
    (tmp_path / "runs" / "2026-01-02T12-00-00").mkdir()  # no features: ignored
    prev = stages.previous_features(tmp_path, "2026-01-03T00-00-00")
    assert prev == tmp_path / "runs" / "2026-01-02T00-00-00" / "features"
    assert stages.previous_features(tmp_path, "2026-01-01T00-00-00") is None


def test_stage_functions_are_the_stage_names_and_unisem_stage_offers_them():
    from unisem.cli import build_parser
    from unisem.pipeline.outputs import STAGES

    assert tuple(stages.STAGE_FUNCTIONS) == STAGES
    stage = build_parser()._subparsers._group_actions[0].choices["stage"]
    assert tuple(next(a for a in stage._actions if a.dest == "name").choices) == STAGES


def test_cluster_switch_by_config():
    assert cluster.spark_mode("local[*]") == "library" and cluster.spark_mode("local[2]") == "library"
    assert cluster.spark_mode("spark://spark-master:7077") == "spark-submit"
    assert cluster.ray_mode("") == "library" and cluster.ray_mode("http://ray-head:8265") == "ray-job"
    # a GCS address (what Ray sets in a job driver's RAY_ADDRESS) trains from this process, joining that cluster
    assert cluster.ray_mode("ray-head:6379") == "library" and cluster.ray_mode("https://ray.example:443") == "ray-job"
    cmd = cluster.spark_submit_command("spark://m:7077", "quality_gate.py", ["--out", "/o"], "/spark/bin/spark-submit",
                                       jobs_dir=Path("/repo/jobs"), extra="--conf spark.driver.host=af")
    assert cmd == ["/spark/bin/spark-submit", "--master", "spark://m:7077", "--name", "unisem-quality_gate",
                   "--conf", "spark.driver.host=af", "/repo/jobs/quality_gate.py", "--out", "/o"]


def test_run_logged_raises_with_the_end_of_the_log(tmp_path):
    cluster.run_logged([sys.executable, "-c", "print('fine')"], tmp_path / "ok.log")
    assert "fine" in (tmp_path / "ok.log").read_text()
    with pytest.raises(cluster.ClusterJobError, match="(?s)exited with 3.*boom"):
        cluster.run_logged([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "bad.log")
    # A failed gate verdict (exit 3) is an answer, not an error, for the validate job.
    assert cluster.run_logged([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "v.log", ok_codes=(0, 3)) == 3


def test_publish_quality_report_copies_to_run_and_latest(tmp_path):
    spec = make_spec("r1", home=tmp_path)
    assert stages.publish_quality_report(spec) == {"published": None}
    q = spec.layout().quality
    q.mkdir(parents=True)
    (q / "verdict.json").write_text('{"verdict": "pass"}')
    (q / "report.html").write_text("<html></html>")
    out = stages.publish_quality_report(spec)
    for folder in (out["published"], out["latest"]):
        assert (Path(folder) / "report.html").read_text() == "<html></html>"
        assert (Path(folder) / "run_id.txt").read_text() == "r1\n"


@pytest.mark.spark
@pytest.mark.slow
def test_features_stage_through_spark_submit_writes_the_same_folder(tmp_path, monkeypatch):
    """The cluster path for real: the stage spark-submits jobs/build_features.py (to a local master here)."""
    from unisem.data.dataset import load_features
    from unisem.data.demo import ensure_demo_data
    from unisem.config import load_config

    overrides = ["data.demo.items=60", "data.demo.users=40", "orchestration.spark_master=local[1]"]
    data = Path(ensure_demo_data(load_config(None, overrides).data.demo, tmp_path))
    spec = make_spec("r1", None, overrides, tmp_path)
    validated = {"catalog": str(data / "catalog.parquet"), "interactions": str(data / "interactions.parquet")}
    monkeypatch.setattr(cluster, "spark_mode", lambda master: "spark-submit")
    commands = []
    real_run_logged = cluster.run_logged

    def run_logged(cmd, *args, **kwargs):
        commands.append(list(cmd))
        return real_run_logged(cmd, *args, **kwargs)

    monkeypatch.setattr(cluster, "run_logged", run_logged)
    out = stages.features(spec, validated)
    assert out["features_dir"] == str(spec.layout().features) and out["items"] == 60
    (cmd,) = commands
    assert Path(cmd[0]).name == "spark-submit" and cmd[1:3] == ["--master", "local[1]"]
    assert cmd[cmd.index("--out") + 1] == str(spec.layout().features) and cmd[-2:] == ["--set", overrides[-1]]
    assert load_features(out["features_dir"]).num_items == 60
