"""The Beauty benchmark's row bookkeeping: GPU rows never replace CPU rows, seeds aggregate, commands rerun."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import beauty  # noqa: E402


def row(seed=42, device="cpu", overrides="", ndcg=0.05, protocol="full"):
    metrics = {k: ndcg for k in beauty.METRICS}
    return {"variant": "unified", "distance": "hybrid", "loss": "ce", "protocol": protocol, "seed": seed,
            "device": device, "overrides": overrides, "metrics": metrics, "best_epoch": 3, "epochs": 5,
            "max_epochs": 200, "stopped_early": True, "seconds_per_epoch": 1.0, "valid_seconds": 0.5,
            "wall_seconds_to_best": 4.5, "collision_rate": 0.02, "embedding_params": 100}


def test_rows_are_keyed_by_device_and_overrides(tmp_path):
    results = tmp_path / "beauty.json"
    old = row()
    del old["device"], old["overrides"]  # a row written before those fields existed counts as cpu, no overrides
    results.write_text(json.dumps([old]))
    rows = beauty.merge_rows([row(device="cuda"), row(overrides="model.id_dim=64")], results)
    assert sorted((r["device"], r["overrides"]) for r in rows) == [("cpu", ""), ("cpu", "model.id_dim=64"), ("cuda", "")]
    rows = beauty.merge_rows([row(device="cuda", ndcg=0.07)], results)  # same key: replaced, not added
    assert len(rows) == 3 and [r["metrics"]["NDCG@10"] for r in rows if r["device"] == "cuda"] == [0.07]
    assert results.with_suffix(".md").exists()


def test_summary_gives_mean_and_sample_sd_over_seeds():
    text = beauty.render_summary([row(seed=42, ndcg=0.04), row(seed=7, ndcg=0.06), row(seed=13, ndcg=0.05)])
    line = next(l for l in text.splitlines() if "| full |" in l)
    assert "| 7,13,42 |" in line and "0.0500 ± 0.0100" in line


def test_notes_below_the_marker_survive_a_merge(tmp_path):
    results = tmp_path / "beauty.json"
    results.with_suffix(".md").write_text("old table\n<!-- rows -->\nhand-written notes\n")
    beauty.merge_rows([row()], results)
    text = results.with_suffix(".md").read_text()
    assert "old table" not in text and text.endswith("<!-- rows -->\nhand-written notes\n")


@pytest.mark.parametrize("argv,expected", [
    (["--variant", "unified", "--results", "/tmp/x.json", "--work", "/tmp/w", "--seed", "7"], "--variant unified --seed 7"),
    (["--variant", "id-only", "--results=/tmp/x.json", "--set=model.id_only_dim=128"], "--variant id-only --set=model.id_only_dim=128"),
])
def test_recorded_command_leaves_out_where_outputs_went(argv, expected):
    assert beauty.rerun_command(argv) == "python benchmarks/beauty.py " + expected


def test_cpu_duration_prices_each_gpu_run_by_the_nearest_cpu_row():
    def timed(device, overrides="", epochs=10, cpu=None, variant="unified"):
        r = row(device=device, overrides=overrides)
        r.update(variant=variant, epochs=epochs, cpu_seconds_per_epoch=cpu)
        return r

    rows = [
        timed("cpu", cpu=60.0), timed("cpu", overrides="model.id_dim=64", cpu=90.0),
        timed("cuda", epochs=30),                               # own config: 30 x 60 = 1800 s
        timed("cuda", overrides="model.id_dim=64", epochs=20),  # own overrides: 20 x 90 = 1800 s
        timed("cuda", overrides="model.id_dim=16", epochs=60),  # no CPU row: the base's 60 x 60 = 3600 s
        timed("cuda", variant="semantic-only", epochs=12),      # no CPU row of the variant: unified's 720 s
    ]
    text = beauty.cpu_duration_estimate(rows)
    assert text.startswith("4 GPU runs would take about 2.2 CPU-hours")  # 7920 s
    assert "the longest 60 CPU-minutes" in text and "2 of them priced at a related" in text


def test_cold_rows_get_their_own_table_by_slice_and_stay_out_of_the_others():
    cold = [{**row(seed=s, ndcg=v), "cold_item_share": 0.1, "slice": sl, "users": n}
            for s, v in ((42, 0.02), (7, 0.04)) for sl, n in (("all", 100), ("warm", 90), ("cold", 10))]
    text = beauty.render_cold([*cold, row()])
    lines = [l for l in text.splitlines() if l.startswith("| 0.1 |")]
    assert [l.split("|")[7].strip() for l in lines] == ["all", "warm", "cold"]
    assert "| 10 | 7,42 | 0.0300 ± 0.0141" in lines[2]
    assert len([l for l in beauty.render_summary([*cold, row()]).splitlines() if l.startswith("| unified")]) == 1
    assert len([l for l in beauty.render_table([*cold, row()]).splitlines() if l.startswith("| unified")]) == 1


def test_the_text_prior_setting_is_the_best_overall_within_the_warm_tolerance():
    grid = {"0/0.02": {"all": 0.056, "warm": 0.0610},   # best overall among those allowed (-1.6%)
            "2/0.02": {"all": 0.058, "warm": 0.0590},   # better overall, but warm drops 4.8%
            "-2/0.02": {"all": 0.055, "warm": 0.0619}}
    assert beauty.pick_prior(0.062, grid, 0.02) == "0/0.02"
    assert beauty.pick_prior(0.062, grid, 0.05) == "2/0.02"
    assert beauty.pick_prior(0.070, grid, 0.02) is None


def test_the_efficiency_table_reads_the_id_width_from_the_only_override():
    unified, id_only = row(), {**row(), "variant": "id-only", "distance": "none"}
    assert beauty.id_width(unified) == 8 and beauty.id_width(id_only) == 64  # the paper's and SASRec's defaults
    assert beauty.id_width({**unified, "overrides": "model.id_dim=32"}) == 32
    assert beauty.id_width({**id_only, "overrides": "model.id_only_dim=128"}) == 128
    assert beauty.id_width({**unified, "overrides": "model.id_dim=32 training.lambda_text=0.1"}) is None
    assert beauty.id_width({**unified, "distance": "cosine"}) is None
