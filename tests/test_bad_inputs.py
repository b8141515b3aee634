"""Inputs that used to go wrong silently: each is now refused (or counted) with a message naming the thing,
and every file that existed before the command is byte-identical afterwards.

One test per finding: (1) an output path onto an input, (2) drift against another dataset's baseline,
(3) degenerate data that "succeeded" without a model, (4) a run on a missing input going into Airflow's
retries, (5) a failed Great Expectations check behind a PASS, (6) counted but unnamed offenders, (7) the
smaller ones: invalid UTF-8 without a line, 0-based rows, a folder given as a file, float-like ids,
``validate --out`` relative, ``evaluate`` without a popularity baseline.

The Spark tests share the session-wide Spark fixture, and the gate runs that several findings need are
done once per module.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_files import clean_catalog, uniform_log, write_catalog, write_events
from unisem.cli import main


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_unchanged(before: dict[Path, bytes]) -> None:
    for path, content in before.items():
        assert path.is_file(), f"{path} was removed or replaced by a folder"
        assert path.read_bytes() == content, f"{path} changed"


def write(path: Path, lines: list[str] | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n")
    return path


def import_table(catalog: Path, interactions: Path, out: Path, *extra: str) -> int:
    return main(["data", "import", "table", "--catalog", str(catalog), "--interactions", str(interactions),
                 "--out", str(out), *extra])


@pytest.fixture
def good_csv(tmp_path):
    cat = write(tmp_path / "good_cat.csv", ["item_id,title", "a,Alpha lipstick", "b,Beta toner", "c,Gamma serum"])
    ev = write(tmp_path / "events.csv", ["user_id,item_id,position", "u1,a,0", "u1,b,1", "u1,c,2", "u2,b,0"])
    return cat, ev


# 1 -----------------------------------------------------------------------------------------------------
def test_1_an_output_onto_an_input_or_a_strangers_folder_is_refused(tmp_path, good_csv, capsys):
    cat, ev = good_csv
    stranger = tmp_path / "photos"
    write(stranger / "holiday.jpg", b"\xff\xd8 not really a picture")
    before = snapshot(tmp_path)

    assert import_table(cat, ev, cat) == 1  # --out is the catalog itself
    assert f"--out {cat}: is the input {cat}" in capsys.readouterr().err
    assert import_table(cat, ev, tmp_path) == 1  # --out holds both inputs
    assert "contains the input" in capsys.readouterr().err
    assert import_table(cat, ev, cat / "inside") == 1  # --out below an input
    assert "lies inside the input" in capsys.readouterr().err
    assert import_table(cat, ev, stranger) == 1  # not an earlier import: needs --replace
    assert f"--out {stranger}: is a folder that holds no earlier import" in capsys.readouterr().err
    assert main(["data", "import", "beauty", str(tmp_path), "--out", str(tmp_path / "sub")]) == 1
    assert "lies inside the input" in capsys.readouterr().err
    assert_unchanged(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.csv", "good_cat.csv", "photos"]  # no .old-PID

    # An earlier import is replaced without a flag; a stranger's folder only with --replace.
    assert import_table(cat, ev, tmp_path / "out") == 0
    assert import_table(cat, ev, tmp_path / "out") == 0
    assert import_table(cat, ev, stranger, "--replace") == 0
    assert (stranger / "import.json").exists() and not (stranger / "holiday.jpg").exists()
    assert_unchanged({p: b for p, b in before.items() if stranger not in p.parents})


# Spark: gate runs shared by several findings --------------------------------------------------------------
def _validate(catalog: Path, interactions: Path, out: Path | str, home: Path, *extra: str) -> int:
    return main(["validate", "--catalog", str(catalog), "--interactions", str(interactions), "--out", str(out),
                 "--home", str(home), *extra])


# 2 -----------------------------------------------------------------------------------------------------
@pytest.mark.spark
def test_2_drift_is_measured_only_against_the_same_dataset_and_the_report_says_against_what(
        spark, tmp_path, capsys):
    home = tmp_path / "home"
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    ids, titles, brands = clean_catalog(100)
    a_cat = write_catalog(tmp_path / "a" / "catalog.parquet", ids, titles, brands)
    a_log = write_events(tmp_path / "a" / "interactions.parquet", uniform_log(ids, 200, 6))
    # A second, unrelated dataset: a smaller catalog and a thin log (against A this drifts by far).
    b_ids, b_titles, b_brands = clean_catalog(60)
    b_cat = write_catalog(tmp_path / "b" / "catalog.parquet", b_ids, b_titles, b_brands)
    b_log = write_events(tmp_path / "b" / "interactions.parquet", uniform_log(b_ids, 40, 5, seed=3, prefix="b"))
    inputs = snapshot(tmp_path)

    assert _validate(a_cat, a_log, tmp_path / "gate-a1", home) == 0
    assert "baseline: no baseline yet" in capsys.readouterr().out
    assert _validate(b_cat, b_log, tmp_path / "gate-b", home) == 0  # not failed on drift against A
    b = json.loads((tmp_path / "gate-b" / "verdict.json").read_text())
    assert b["verdict"] in ("pass", "warn") and "max_popularity_kl" not in b["failed"]
    assert b["baseline"]["compared_with"] is None and "no baseline yet" in b["baseline"]["note"]
    assert b["measures"]["popularity_kl"] is None
    assert "no baseline yet" in (tmp_path / "gate-b" / "report.html").read_text()
    capsys.readouterr()

    assert _validate(a_cat, a_log, tmp_path / "gate-a2", home) == 0
    a2 = json.loads((tmp_path / "gate-a2" / "verdict.json").read_text())
    first = json.loads((tmp_path / "gate-a1" / "verdict.json").read_text())
    assert a2["baseline"]["compared_with"] == str(tmp_path / "gate-a1")
    assert first["created"] <= a2["baseline"]["accepted_at"] <= a2["created"]  # when A's first run was accepted
    assert a2["dataset"] == first["dataset"] == f"{a_cat} + {a_log}"
    assert a2["measures"]["popularity_kl"] == pytest.approx(0.0, abs=1e-9)
    assert f"drift against the accepted run {tmp_path / 'gate-a1'}" in (tmp_path / "gate-a2" / "report.html").read_text()
    assert len(list((home / "quality" / "baselines").glob("*.json"))) == 2  # one per dataset
    assert_unchanged(inputs)


# 3 -----------------------------------------------------------------------------------------------------
@pytest.mark.spark
def test_3_a_log_of_one_interaction_per_user_fails_the_gate_features_and_train(spark, tmp_path, capsys):
    ids, titles, brands = clean_catalog(100)
    cat = write_catalog(tmp_path / "catalog.parquet", ids, titles, brands)
    log = write_events(tmp_path / "interactions.parquet", [(f"user{u:04d}", ids[u % 100], 0) for u in range(300)])
    earlier = write(tmp_path / "features" / "manifest.json", ['{"an": "earlier features folder"}'])
    before = snapshot(tmp_path)

    assert _validate(cat, log, tmp_path / "gate", tmp_path / "home") == 3
    out = capsys.readouterr().out
    assert "fail: short_user_share = 1, above the maximum" in out and "(max_short_user_share)" in out
    assert "fail: items_below_min_share = 1, above the maximum" in out and "(max_items_below_min_share)" in out
    assert "e.g. user_id 'user0000'" in out  # the offenders are named

    assert main(["features", "--catalog", str(cat), "--interactions", str(log), "--out", str(tmp_path / "features")]) == 1
    err = capsys.readouterr().err
    assert f"{log}: no user is trainable: all 300 users have fewer than data.min_user_interactions=3" in err
    assert_unchanged(before)
    assert earlier.read_text() == '{"an": "earlier features folder"}\n'


def test_3_train_fails_when_no_epoch_produced_a_model(tmp_path, capsys):
    from safetensors.numpy import save_file

    from unisem.data.dataset import sequences_from_lists, write_features

    data = sequences_from_lists({}, ["i0", "i1", "i2"], ["a", "b", "c"])  # features without a single user
    write_features(data, tmp_path / "features")
    (tmp_path / "emb").mkdir()
    import numpy as np

    save_file({"embeddings": np.zeros((4, 8), dtype=np.float32)}, str(tmp_path / "emb" / "item_embeddings.safetensors"))
    (tmp_path / "emb" / "meta.json").write_text("{}")
    before = snapshot(tmp_path)
    code = main(["train", "--features", str(tmp_path / "features"), "--embeddings", str(tmp_path / "emb"),
                 "--out", str(tmp_path / "t"), "--set", "training.max_epochs=2", "--set", "training.show_progress=false",
                 "--set", "quantizer.codebook_size=2", "--set", "quantizer.code_dim=4", "--set", "quantizer.encoder_hidden=[8]"])
    captured = capsys.readouterr()
    assert code == 1
    assert "training produced no model: valid/" in captured.err and "no user to validate on (0 users" in captured.err
    assert "model_dir" not in captured.out  # no model path printed
    assert not (tmp_path / "t" / "model").exists()
    assert_unchanged(before)


# 4 -----------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_4_run_checks_inputs_and_services_before_airflow_starts(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("UNISEM_HOME", str(home))
    ids, titles, brands = clean_catalog(10)
    cat = write_catalog(tmp_path / "catalog.parquet", ids, titles, brands)
    log = write_events(tmp_path / "interactions.parquet", uniform_log(ids, 5, 4))
    before = snapshot(tmp_path)

    started = time.monotonic()
    code = main(["run", "--catalog", str(tmp_path / "missing.parquet"), "--interactions", str(log)])
    assert code == 1
    assert f"data.catalog: {tmp_path / 'missing.parquet'} does not exist" in capsys.readouterr().err
    (tmp_path / "exports").mkdir()
    write(tmp_path / "exports" / "items.csv", ["item_id", "a"])
    assert main(["run", "--catalog", str(tmp_path / "exports"), "--interactions", str(log)]) == 1  # no Parquet parts
    assert "is a folder without Parquet part files" in capsys.readouterr().err
    assert main(["run", "--catalog", str(log), "--interactions", str(cat)]) == 1  # swapped: wrong columns
    assert f"data.interactions: {cat} has no column user_id" in capsys.readouterr().err
    port = _free_port()  # nothing listens there
    assert main(["run", "--catalog", str(cat), "--interactions", str(log), "--spark-master", f"spark://127.0.0.1:{port}"]) == 1
    assert f"Spark master at spark://127.0.0.1:{port} (127.0.0.1:{port}) is not reachable" in capsys.readouterr().err
    assert main(["run", "--catalog", str(cat), "--interactions", str(log), "--mlflow-uri", f"http://127.0.0.1:{port}"]) == 1
    assert f"MLflow tracking server at http://127.0.0.1:{port}" in capsys.readouterr().err
    # All of it before Airflow: no metadata database was made, and it took seconds, not a retry schedule.
    assert not (home / "airflow").exists()
    assert time.monotonic() - started < 120
    assert_unchanged(before)


def test_4_an_input_error_inside_an_airflow_task_is_not_retried():
    """Outside a task the error is itself; the e2e test runs the real task (``test_pipeline_e2e``)."""
    from unisem.data.contract import DataContractError
    from unisem.pipeline.records import NOT_RETRIED, not_retried

    exc = DataContractError("c.parquet: row 3: field item_id is empty")
    assert isinstance(exc, NOT_RETRIED) and not_retried(exc) is exc
    other = RuntimeError("a flaky service")
    assert not_retried(other) is other


# 5, 6 and 7 (relative --out): one gate run over a catalog with a 100 kB title and two mojibake titles ------
@pytest.fixture(scope="module")
def dirty_gate(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty-gate")
    ids, titles, brands = clean_catalog(100)
    titles[7] = "Serum " + "x" * 100_000
    titles[3], titles[4] = "Ã˜ 1.75mm filament", "Crème brÃ»lée lip balm"
    cat = write_catalog(root / "catalog.parquet", ids, titles, brands)
    log = write_events(root / "interactions.parquet", uniform_log(ids, 200, 6))
    before = snapshot(root)
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:  # --out relative to the working folder (Great Expectations wants absolute paths: resolved first)
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _validate(Path("catalog.parquet"), Path("interactions.parquet"), "gate", root / "home")
    finally:
        os.chdir(cwd)
    verdict = json.loads((root / "gate" / "verdict.json").read_text())
    return {"root": root, "code": code, "out": out.getvalue(), "err": err.getvalue(), "verdict": verdict,
            "before": before, "ids": ids, "report": (root / "gate" / "report.html").read_text()}


TITLE_LENGTH = "expect_column_value_lengths_to_be_between(title)"


@pytest.mark.spark
def test_5_a_failed_expectation_shows_in_the_verdict_and_the_report(dirty_gate):
    v = dirty_gate["verdict"]
    assert dirty_gate["code"] == 0 and v["verdict"] == "warn"  # a warning-severity expectation warns, never a PASS
    assert f"expectation:catalog_text_quality/{TITLE_LENGTH}" in v["warnings"]
    failed = {f["expectation"]: f for f in v["expectations_failed"]}
    assert failed[TITLE_LENGTH]["severity"] == "warning" and failed[TITLE_LENGTH]["unexpected_count"] == 1
    assert v["offenders"][TITLE_LENGTH][0]["item_id"] == dirty_gate["ids"][7]
    assert v["offenders"][TITLE_LENGTH][0]["value"].endswith("(100,006 characters)")  # cut, not 100 kB
    assert f"warn: expectation catalog_text_quality/{TITLE_LENGTH} failed on 1 rows; e.g. item_id 'item0007'" in dirty_gate["out"]
    assert "Failed expectations" in dirty_gate["report"] and TITLE_LENGTH in dirty_gate["report"]
    assert_unchanged(dirty_gate["before"])


@pytest.mark.spark
def test_6_offending_items_are_named_per_failing_check(dirty_gate):
    v = dirty_gate["verdict"]
    assert "max_mojibake_share" in v["warnings"]
    named = {o["item_id"]: o["value"] for o in v["offenders"]["max_mojibake_share"]}
    assert set(named) == {"item0003", "item0004"}
    assert named["item0003"].startswith("Ã˜ 1.75mm filament")
    assert "item0003" in dirty_gate["report"] and "Examples of offending rows" in dirty_gate["report"]
    assert ("warn: mojibake_share = 0.02, above the maximum 0.0 (max_mojibake_share); e.g. item_id 'item0003', 'item0004'"
            in dirty_gate["out"])
    assert all(len(rows) <= 10 for rows in v["offenders"].values())
    assert_unchanged(dirty_gate["before"])


@pytest.mark.spark
def test_7_validate_resolves_a_relative_out_before_spark(dirty_gate):
    # Only progress lines on stderr: no error, no Great Expectations traceback about the relative path.
    assert "error" not in dirty_gate["err"].lower() and "Traceback" not in dirty_gate["err"], dirty_gate["err"]
    assert (dirty_gate["root"] / "gate" / "data_docs" / "index.html").exists()
    assert dirty_gate["verdict"]["inputs"]["catalog"] == str(dirty_gate["root"] / "catalog.parquet")


# 7: the smaller ones ----------------------------------------------------------------------------------
def test_7_csv_errors_name_the_line_a_user_sees(tmp_path, capsys):
    cat = write(tmp_path / "cat.csv", ["item_id,title", "a,A", "", "b,B", "a,C"])  # blank line 3
    ev = write(tmp_path / "ev.csv", ["user_id,item_id,position", "u,a,0"])
    before = snapshot(tmp_path)
    assert import_table(cat, ev, tmp_path / "out") == 1
    assert f"{cat}: line 5: field item_id: duplicated id 'a' (first seen at line 2)" in capsys.readouterr().err
    pq.write_table(pa.table({"item_id": ["a", "b", "a"]}), tmp_path / "cat.parquet")
    assert import_table(tmp_path / "cat.parquet", ev, tmp_path / "out") == 1
    assert "cat.parquet: row 3: field item_id: duplicated id 'a' (first seen at row 1)" in capsys.readouterr().err
    assert_unchanged(before)
    assert not (tmp_path / "out").exists()


def test_7_invalid_utf8_is_reported_with_its_line(tmp_path, capsys):
    cat = write(tmp_path / "cat.csv", b"item_id,title\na,Alpha\nb,Caf\xe9 cr\xe8me\n")
    ev = write(tmp_path / "ev.csv", ["user_id,item_id,position", "u,a,0"])
    src = tmp_path / "beauty"
    write(src / "items.jsonl", b'{"item_id": "1", "title": "ok"}\n{"item_id": "2", "title": "Caf\xe9"}\n')
    write(src / "sequences.txt", ["u 1 2"])
    before = snapshot(tmp_path)
    assert import_table(cat, ev, tmp_path / "out") == 1
    assert f"{cat}: line 3: not UTF-8 text: byte 0xe9 at column 6" in capsys.readouterr().err
    assert main(["data", "import", "beauty", str(src), "--out", str(tmp_path / "out")]) == 1
    assert f"{src / 'items.jsonl'}: line 2: not UTF-8 text: byte 0xe9" in capsys.readouterr().err
    assert_unchanged(before)


def test_7_a_folder_given_as_a_file_is_named_as_a_folder(tmp_path, good_csv, capsys):
    cat, ev = good_csv
    (tmp_path / "events_dir.csv").mkdir()
    write(tmp_path / "events_dir.csv" / "part-0.csv", ["user_id,item_id,position", "u,a,0"])
    before = snapshot(tmp_path)
    assert import_table(cat, tmp_path / "events_dir.csv", tmp_path / "out") == 1
    assert f"{tmp_path / 'events_dir.csv'}: is a folder, not a file" in capsys.readouterr().err
    src = write(tmp_path / "src" / "sequences.txt", ["u a b"]).parent
    (src / "items.jsonl").mkdir()
    assert main(["data", "import", "beauty", str(src), "--out", str(tmp_path / "out")]) == 1
    assert f"{src / 'items.jsonl'}: is a folder, not a file" in capsys.readouterr().err
    assert_unchanged(before)


def test_7_float_like_ids_are_one_id_in_every_format(tmp_path):
    from unisem.data.importers import import_tables

    # A CSV written from a float column says "5.0"; Parquet and JSON hold the number 5.0: all are id "5".
    cat = write(tmp_path / "cat.csv", ["item_id,title", "5.0,Five", "007,Seven", "8.5,Eight and a half"])
    pq.write_table(pa.table({"user_id": [1.0, 1.0, 2.0], "item_id": [5.0, 8.5, 5.0], "position": [0, 1, 0]}),
                   tmp_path / "ev.parquet")
    before = snapshot(tmp_path)
    summary = import_tables(cat, tmp_path / "ev.parquet", tmp_path / "out")
    assert summary.dropped_unknown == 0 and summary.interactions == 3
    assert pq.read_table(tmp_path / "out" / "catalog.parquet")["item_id"].to_pylist() == ["5", "007", "8.5"]
    events = pq.read_table(tmp_path / "out" / "interactions.parquet")
    assert events["user_id"].to_pylist() == ["1", "1", "2"] and events["item_id"].to_pylist() == ["5", "8.5", "5"]
    write(tmp_path / "ev.jsonl", ['{"user_id": 1, "item_id": 5.0, "position": 0}'])
    import_tables(cat, tmp_path / "ev.jsonl", tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "interactions.parquet")["item_id"].to_pylist() == ["5"]
    assert_unchanged(before)


def test_7_evaluate_prints_a_popularity_baseline_beside_the_model(tmp_path, capsys, single_thread):
    from synthetic_sequences import TINY_MODEL, chain_dataset
    from unisem.config import load_config
    from unisem.data.dataset import write_features
    from unisem.evaluate.protocols import evaluate
    from unisem.evaluate.slices import item_popularity
    from unisem.model.storage import save_model
    from unisem.model.network import build_network
    import torch

    data, text = chain_dataset(users=80)
    features = write_features(data, tmp_path / "features")
    cfg = load_config(None, TINY_MODEL)
    save_model(build_network(cfg, data.num_items, text, data.cold_items), cfg, data.item_ids, data.item_titles,
               tmp_path / "model")
    before = snapshot(tmp_path)
    assert main(["evaluate", "--model", str(tmp_path / "model"), "--features", str(features),
                 "--out", str(tmp_path / "eval"), *sum((["--set", o] for o in TINY_MODEL), [])]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith("popularity baseline")]
    assert [r[2] for r in rows] == ["full", "sampled-99"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    pop = metrics["baselines"]["popularity"]
    # The same numbers as ranking by training popularity through the protocols directly.
    counts = torch.from_numpy(item_popularity(data).astype("float32"))
    direct = evaluate(lambda h: counts.expand(h.shape[0], -1), data, cfg.evaluation, split="test", max_len=12,
                      slices=False).protocols
    assert pop["full"]["NDCG@10"] == pytest.approx(direct["full"]["NDCG@10"])
    assert f"{pop['full']['NDCG@10']:.4f}" in " ".join(rows[0])
    assert_unchanged(before)


@pytest.mark.slow
@pytest.mark.spark
def test_4_inside_the_dag_an_input_error_fails_validate_once_without_retries(tmp_path):
    """Inputs that pass the pre-flight (Parquet, key columns) but cannot be read together: part files of
    the interactions folder disagree on a column type. With three retries configured, validate runs once."""
    import os
    import sqlite3
    import subprocess
    import sys

    ids, titles, brands = clean_catalog(20)
    cat = write_catalog(tmp_path / "catalog.parquet", ids, titles, brands)
    parts = tmp_path / "interactions"
    parts.mkdir()
    write_events(parts / "part-0.parquet", uniform_log(ids, 10, 4))
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": ["item0000", "item0001"], "position": [0, 0]}),
                   parts / "part-1.parquet")
    config = write(tmp_path / "retries.yaml", ["orchestration: {retries: 3, retry_delay_minutes: 0.02}",
                                                "text: {show_progress: false}"])
    home = tmp_path / "home"
    before = snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "UNISEM_", "MLFLOW_", "RAY_ADDRESS", "SPARK_MASTER"))}
    env.update({"UNISEM_HOME": str(home), "HF_HUB_OFFLINE": "1", "UNISEM_SPARK_DRIVER_MEMORY": "1g"})
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from unisem.cli import main; sys.exit(main())", "run", "--config",
         str(config), "--date", "2026-03-02", "--catalog", str(cat), "--interactions", str(parts)],
        env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((home / "runs" / "2026-03-02T00-00-00" / "report" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_stage"] == "validate"
    assert "DataContractError" in summary["error"] and str(parts) in summary["error"]
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        rows = dict(db.execute("SELECT task_id, try_number FROM task_instance WHERE dag_id = 'unisem_nightly'"
                               " AND state = 'failed'").fetchall())
    assert rows.get("validate") == 1  # failed at once: 3 retries configured, none used
    assert "watcher" in rows
    assert_unchanged(before)
