"""MLflow tracking, the pyfunc model, registration and promotion, on a real SQLite store in tmp_path.

Two tiny models are trained in-process on synthetic chains: a good one (a few epochs) and a bad one
(learning rate 0: the random initial network), so "better" is not in doubt.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from safetensors.numpy import save_file

from synthetic_sequences import TINY_MODEL, chain_dataset

from unisem.config import load_config
from unisem.data.dataset import write_features
from unisem.home import RunLayout

TINY = [*TINY_MODEL, "evaluation.ks=[10]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Features, embeddings and two trained model folders (good, bad), shared by the module's tests."""
    from unisem.train import fit

    root = tmp_path_factory.mktemp("registry")
    data, text = chain_dataset(items=60, users=300, seed=0)
    write_features(data, root / "features")
    (root / "embeddings").mkdir()
    save_file({"embeddings": text}, str(root / "embeddings" / "item_embeddings.safetensors"))
    (root / "embeddings" / "meta.json").write_text(json.dumps({"model": "synthetic", "dim": text.shape[1]}))
    good_cfg = load_config(None, TINY + ["training.max_epochs=5", "training.lr=0.01"])
    bad_cfg = load_config(None, TINY + ["training.max_epochs=1", "training.lr=0.0"])
    good = fit(good_cfg, data, text, root / "good")
    bad = fit(bad_cfg, data, text, root / "bad")
    return {"root": root, "data": data, "text": text, "good": good, "bad": bad, "cfg": good_cfg}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow SQLite store and UNISEM_HOME per test."""
    home = tmp_path / "home"
    monkeypatch.setenv("UNISEM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


def _layout(home: Path, run_id: str, trained, verdict: str | None = "pass") -> RunLayout:
    layout = RunLayout.for_run(run_id, home)
    if verdict:
        layout.quality.mkdir(parents=True)
        (layout.quality / "verdict.json").write_text(json.dumps({"verdict": verdict}))
        (layout.quality / "report.html").write_text("<html>quality</html>")
    return layout


def _register(cfg, layout: RunLayout, model, **paths):
    """log_and_register with every path given explicitly, as the register stage hands them over."""
    from unisem.registry.registration import log_and_register

    verdict = layout.quality / "verdict.json"
    metrics = layout.evaluation / "metrics.json"
    return log_and_register(cfg, model, layout.root.name, record_dir=layout.registry,
                            metrics_path=metrics if metrics.exists() else None, plots_dir=layout.evaluation,
                            verdict_path=verdict if verdict.exists() else None, **paths)


# ------------------------------------------------------------------------------------------------ tracking


def test_tracking_uri_prefers_config_then_environment_then_home(monkeypatch, tmp_path):
    from unisem.registry.tracking import local_artifact_root, tracking_uri

    monkeypatch.setenv("UNISEM_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(load_config()) == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert local_artifact_root(tracking_uri(load_config())) == tmp_path / "h" / "mlartifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(load_config()) == "http://mlflow:5000"
    assert local_artifact_root("http://mlflow:5000") is None
    assert tracking_uri(load_config(None, ["registry.tracking_uri=sqlite:////x/y.db"])) == "sqlite:////x/y.db"


def test_data_version_depends_on_content_not_on_file_names(tmp_path):
    from unisem.registry.versions import data_version

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, names in ((a, ("part-1.json", "part-2.json")), (b, ("part-x.json", "part-y.json"))):
        folder.mkdir()
        (folder / names[0]).write_bytes(b"one")
        (folder / names[1]).write_bytes(b"two")
        (folder / "manifest.json").write_text(json.dumps({"written_at": str(folder)}))
    assert data_version([a]) == data_version([b])
    (b / "part-y.json").write_bytes(b"changed")
    assert data_version([a]) != data_version([b])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data_version([tmp_path / "nowhere"])


def test_identical_rows_give_identical_data_versions_whatever_the_part_files(tmp_path):
    """Spark writes the same table into other part files, row orders and compressions on every rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unisem.registry.versions import data_version

    rows = pa.table({"user_index": pa.array(range(1, 101), pa.int32()),
                     "items": [[i, i + 1, i * 3] for i in range(100)]})
    one, two = tmp_path / "one" / "sequences", tmp_path / "two" / "sequences"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    pq.write_table(rows, one / "part-00000-aaaa.snappy.parquet")
    shuffled = rows.take(pa.array(list(range(99, -1, -1))))
    for k, start in enumerate(range(0, 100, 30)):  # four part files, reversed rows, another codec
        pq.write_table(shuffled.slice(start, 30), two / f"part-{k:05d}-bbbb.zstd.parquet", compression="zstd")
    (two.parent / "manifest.json").write_text("{}")
    assert data_version([one.parent]) == data_version([two.parent])
    assert data_version([one.parent]) == data_version([one.parent])  # a rerun
    changed = rows.set_column(1, "items", pa.array([[i, i + 1, i * 3 + (i == 50)] for i in range(100)]))
    pq.write_table(changed, one / "part-00000-aaaa.snappy.parquet")
    assert data_version([one.parent]) != data_version([two.parent])
    (two / "part-00001-bbbb.zstd.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="part-00001-bbbb.zstd.parquet"):
        data_version([two.parent])


def test_metric_keys_are_mlflow_legal():
    from unisem.registry.tracking import config_params, evaluation_metrics, metric_key

    assert metric_key("full/NDCG@10") == "full/NDCG_at_10"
    report = {"split": "test", "metrics": {"full/NDCG@10": 0.5, "sampled-99/HR@1": 0.25},
              "slices": {"tail": {"full": {"NDCG@10": 0.1}, "users": 3}}}
    assert evaluation_metrics(report) == {
        "test/full/NDCG_at_10": 0.5, "test/sampled-99/HR_at_1": 0.25,
        "test/slice/tail/full/NDCG_at_10": 0.1, "test/slice/tail/users": 3.0,
    }
    params = config_params(load_config())
    assert params["training.lr"] == "0.001" and params["evaluation.ks"] == "[1, 5, 10, 20]"


# ------------------------------------------------------------------------------------------------ promotion rule


# The rule itself (interval, guardrails) is tested on hand-made arrays in test_promotion_rule.py.


# ------------------------------------------------------------------------------------------------ serving


def test_new_catalog_item_is_scored_through_its_semantic_tokens(trained):
    from unisem.model import load_model
    from unisem.model.inference_by_id import ServingModel

    serving = ServingModel(load_model(trained["good"].model_dir))
    rec = serving.recommender
    # a "new" item whose text is item i5's text: same semantic vector, the unknown ID vector
    assert serving.add_items(["new-item", "i5"], trained["text"][[6, 6]]) == 1  # i5 is known: skipped
    new_index = serving.index["new-item"]
    assert new_index == rec.table.shape[0] - 1 == 61
    sem = rec.table[:, : rec.network.items.rqvae.quantizer.codebooks.shape[-1]]
    assert np.allclose(sem[new_index].detach().numpy(), sem[6].detach().numpy(), atol=1e-5)
    unknown = rec.network.items.ids.weight[rec.network.items.num_items + 1].detach().numpy()
    assert np.allclose(rec.table[new_index, sem.shape[1]:].detach().numpy(), unknown)
    assert (rec.semantic_ids[new_index] == rec.semantic_ids[6]).all()
    out = serving.recommend([["i0", "i6"]], k=61, exclude_seen=True)
    assert "new-item" in out.item_ids[0] and not {"i0", "i6"} & set(out.item_ids[0])
    assert len(out.item_ids[0]) == 59  # 61 items minus the 2 seen
    # a history can hold the new item too
    assert serving.recommend([["new-item"]], k=3).item_ids[0]
    with pytest.raises(ValueError, match="width"):
        serving.add_items(["bad"], np.zeros((1, 5), dtype=np.float32))


def test_aligned_scores_map_between_vocabularies(trained):
    import torch

    from unisem.model import load_model
    from unisem.model.inference_by_id import ServingModel

    serving = ServingModel(load_model(trained["good"].model_dir))
    own = serving.recommender.score(torch.tensor([[0, 0, 1, 2]]))
    # another vocabulary: reversed order, plus one item the model does not know
    other = list(reversed(serving.item_ids)) + ["unseen"]
    fn = serving.aligned_score_fn(other)
    hist = torch.tensor([[0, other.index("i0") + 1, other.index("unseen") + 1, other.index("i1") + 1]])
    scores = fn(hist)
    assert scores.shape == (1, len(other) + 1)
    assert scores[0, 0] == float("-inf") and scores[0, len(other)] == float("-inf")
    for j, item in enumerate(other[:-1]):
        assert torch.isclose(scores[0, j + 1], own[0, serving.index[item]])


# ------------------------------------------------------------------------------------------------ MLflow


def test_registered_model_predicts_in_a_fresh_process_exactly_like_in_memory(trained, store):
    from unisem.model import load_model
    from unisem.model.inference_by_id import ServingModel
    from unisem.registry.tracking import client as registry_client
    from unisem.registry.tracking import tracking_uri

    from unisem.evaluate.saved_model import evaluate_model_dir

    cfg = trained["cfg"]
    layout = _layout(store, "run-1", trained)
    report = evaluate_model_dir(trained["good"].model_dir, trained["root"] / "features", cfg, split="test",
                                out_dir=layout.evaluation, history=trained["good"].history)
    result = _register(cfg, layout, trained["good"], features_dir=trained["root"] / "features",
                       embeddings_dir=trained["root"] / "embeddings")
    assert result.version == "1" and result.model_uri == "models:/unisem/1"

    client = registry_client(cfg)
    mv = client.get_model_version_by_alias("unisem", "challenger")
    assert str(mv.version) == "1"
    assert mv.tags["gate_verdict"] == "pass" and len(mv.tags["data_version"]) == 64 and mv.tags["code_version"]
    assert float(mv.tags["best_epoch"]) == trained["good"].best_epoch
    run = client.get_run(result.run_id)
    assert run.data.params["training.lr"] == "0.01" and run.data.params["quantizer.levels"] == "2"
    curve = client.get_metric_history(result.run_id, "valid/NDCG_at_10")
    assert [m.step for m in curve] == [1, 2, 3, 4, 5]
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "quality")}
    assert artifacts == {"quality/verdict.json", "quality/report.html"}
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"plots/training_curves.png", "plots/codebook_usage.png"} <= plots
    assert {a.path for a in client.list_artifacts(result.run_id, "evaluation")} == {"evaluation/metrics.json"}
    ndcg = report["metrics"]["full/NDCG@10"]
    assert run.data.metrics["test/full/NDCG_at_10"] == pytest.approx(ndcg)
    assert float(mv.tags["metric.test/full/NDCG_at_10"]) == pytest.approx(ndcg, rel=1e-5)
    assert (layout.registry / "registration.json").exists()
    info = mlflow.models.get_model_info("models:/unisem/1")
    assert info.signature.inputs.input_names() == ["history"]
    assert {p.name: p.default for p in info.signature.params} == {"k": 10, "exclude_seen": True}
    assert info.saved_input_example_info is not None
    # a rerun of the same run folder with the same model adds no version
    again = _register(cfg, layout, trained["good"], features_dir=trained["root"] / "features",
                      embeddings_dir=trained["root"] / "embeddings")
    assert again.version == "1" and again.reused and len(client.search_model_versions("name='unisem'")) == 1
    assert mv.tags["pipeline_run_id"] == "run-1"  # the rerun rule reads the registry's tags

    histories = [["i0", "i1", "i2"], ["i7"], ["i3", "i9", "i15", "i21", "i27"], [], ["i3", "zzz", "i9"], ["zzz"]]
    script = f"""
import json, mlflow, pandas as pd
mlflow.set_tracking_uri({tracking_uri(cfg)!r})
model = mlflow.pyfunc.load_model("models:/unisem@challenger")
out = model.predict(pd.DataFrame({{"history": {histories!r}}}), params={{"k": 7}})
print("RESULT" + json.dumps({{"ids": [list(x) for x in out["item_ids"]], "scores": [list(map(float, x)) for x in out["scores"]],
                             "source": list(out["source"]), "unknown": [list(x) for x in out["unknown_ids"]]}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.split("RESULT", 1)[1])

    memory = load_model(trained["good"].model_dir)
    expect = ServingModel(memory).recommend(histories[:3], k=7)
    assert fresh["ids"][:3] == expect.item_ids
    # Trimmed inference cuts each batch to its longest history, so a batch of 6 and one of 3 differ by float
    # rounding only (the trimmed forward equals the padded one within 1e-5: tests/test_chunked_ranking.py).
    np.testing.assert_allclose(np.array(fresh["scores"][:3]), np.array(expect.scores[:3]), rtol=1e-5, atol=1e-6)
    # ... which is what the Recommender itself returns for the same histories in index form
    import torch

    from unisem.data.dataset import pad_left

    idx = [[memory.index_of(i) for i in h] for h in histories[:3]]
    items, _ = memory.recommend(torch.as_tensor(pad_left([np.array(r) for r in idx], 12)), k=7)
    assert [[memory.item_ids[i - 1] for i in row] for row in items.tolist()] == fresh["ids"][:3]
    # Honest answers: unknown ids dropped and named; nothing known left -> the training data's popularity.
    assert fresh["source"] == ["model", "model", "model", "fallback", "model", "fallback"]
    assert fresh["unknown"] == [[], [], [], [], ["zzz"], ["zzz"]]
    assert fresh["ids"][4] == ServingModel(memory).recommend([["i3", "i9"]], k=7).item_ids[0]
    from collections import Counter

    counts = Counter(int(i) for h in trained["data"].histories for i in h)  # training histories only
    total = sum(counts.values())
    popular = sorted(counts, key=lambda i: (-counts[i], i))[:7]
    assert fresh["ids"][3] == fresh["ids"][5] == [f"i{i - 1}" for i in popular]
    np.testing.assert_allclose(fresh["scores"][3], [counts[i] / total for i in popular])


def test_tampered_artifact_is_rejected_naming_the_file(trained, store):
    from unisem.registry.pyfunc_model import ArtifactIntegrityError

    cfg = trained["cfg"]
    _register(cfg, _layout(store, "run-t", trained), trained["good"])
    weights = [p for p in (store / "mlartifacts").rglob("weights.safetensors")]
    assert len(weights) == 1
    data = bytearray(weights[0].read_bytes())
    data[-1] ^= 0xFF
    weights[0].write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"weights\.safetensors: model artifact was modified"):
        mlflow.pyfunc.load_model("models:/unisem@challenger")


def test_a_failed_gate_is_not_registered(trained, store):
    from unisem.registry.registration import RegistrationError

    with pytest.raises(RegistrationError, match="quality gate failed"):
        _register(trained["cfg"], _layout(store, "run-f", trained, verdict="fail"), trained["bad"])


def test_promotion_picks_the_better_model_and_refuses_the_worse(trained, store):
    from unisem.registry.promotion import promote_if_better
    from unisem.registry.tracking import client as registry_client

    cfg = trained["cfg"]
    features, embeddings = trained["root"] / "features", trained["root"] / "embeddings"
    client = registry_client(cfg)

    def register_and_promote(run_id: str, model):
        layout = _layout(store, run_id, trained)
        reg = _register(cfg, layout, model)
        return reg, promote_if_better(cfg, features, embeddings, record_dir=layout.registry), layout

    reg1, first, _ = register_and_promote("r1", trained["bad"])
    assert first.promoted and first.champion_version is None and "first model" in first.reason
    reg2, better, layout2 = register_and_promote("r2", trained["good"])
    assert better.promoted and better.champion_version == reg1.version
    assert better.challenger_value > better.champion_value
    assert str(client.get_model_version_by_alias("unisem", "champion").version) == reg2.version
    record = json.loads((layout2.registry / "promotion.json").read_text())
    assert record["promoted"] and record["challenger_value"] == better.challenger_value
    assert record["champion_value"] == better.champion_value

    reg3, worse, _ = register_and_promote("r3", trained["bad"])
    assert not worse.promoted and "champion stays" in worse.reason
    assert worse.champion_version == reg2.version and worse.challenger_value < worse.champion_value
    assert str(client.get_model_version_by_alias("unisem", "champion").version) == reg2.version
    assert str(client.get_model_version_by_alias("unisem", "challenger").version) == reg3.version
    tags = client.get_model_version("unisem", reg3.version).tags
    assert tags["promotion.decision"] == "refused" and float(tags["promotion.champion_value"]) > 0
    # the champion was re-evaluated on today's data: the same number as when it was the challenger
    assert worse.champion_value == pytest.approx(better.challenger_value)


def test_cli_register_promote_and_recommend_from_the_registry(trained, store, capsys):
    from unisem.cli import main

    root = trained["root"]
    tiny = [a for s in TINY for a in ("--set", s)]
    assert main(["register", "--run", "cli-run", "--training", str(root / "good"), "--features", str(root / "features"),
                 *tiny]) == 0
    registered = json.loads(capsys.readouterr().out)
    assert registered["version"] == "1" and registered["tags"]["gate_verdict"] == "unknown"
    assert main(["promote", "--features", str(root / "features"), "--embeddings", str(root / "embeddings"),
                 "--run", "cli-run", *tiny]) == 0
    decision = json.loads(capsys.readouterr().out)
    record = store / "runs" / "cli-run" / "registry" / "promotion.json"
    assert decision["promoted"] and json.loads(record.read_text())["promoted"] is True
    # promoting again (a rerun) changes nothing and keeps the recorded decision
    assert main(["promote", "--features", str(root / "features"), "--run", "cli-run", *tiny]) == 0
    again = json.loads(capsys.readouterr().out)
    assert not again["promoted"] and "already the champion" in again["reason"]
    assert again["challenger_value"] == decision["challenger_value"]
    assert json.loads(record.read_text())["promoted"] is True
    from unisem.registry.tracking import client as registry_client

    tags = registry_client(load_config(None, TINY)).get_model_version("unisem", "1").tags
    assert tags["promotion.decision"] == "promoted"
    assert main(["recommend", "--model", "models:/unisem@champion", "--history", "i0,i6", "-k", "3", *tiny]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "3"]
    assert not {line.split("\t")[1] for line in lines} & {"i0", "i6"}
    # the same ranking as the model folder served directly
    assert main(["recommend", "--model", str(root / "good" / "model"), "--history", "i0,i6", "-k", "3"]) == 0
    local = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in local] == [line.split("\t")[1] for line in lines]
    # The CLI answers like the served model: unknown ids dropped and named, the fallback when nothing is known.
    import pandas as pd

    served = mlflow.pyfunc.load_model("models:/unisem@champion").predict(
        pd.DataFrame({"history": [["i0", "nope", "i6"], ["nope"]]}), params={"k": 3})
    assert main(["recommend", "--model", "models:/unisem@champion", "--history", "i0,nope,i6", "-k", "3", *tiny]) == 0
    out = capsys.readouterr()
    assert [line.split("\t")[1] for line in out.out.strip().splitlines()] == list(served["item_ids"][0])
    assert [line.split("\t")[1] for line in out.out.strip().splitlines()] == [line.split("\t")[1] for line in lines]
    assert "source: model; unknown item ids dropped: nope" in out.err
    assert main(["recommend", "--model", "models:/unisem@champion", "--history", "nope", "-k", "3", *tiny]) == 0
    out = capsys.readouterr()
    assert served["source"][1] == "fallback"
    assert [line.split("\t")[1] for line in out.out.strip().splitlines()] == list(served["item_ids"][1])
    assert "source: fallback; unknown item ids dropped: nope" in out.err



def test_a_champion_from_an_older_catalog_is_evaluated_on_todays_items(trained):
    """Today's features hold 10 items the model never saw (text only): they become candidates through their
    semantic tokens, so the model is ranked against the same catalog as a model trained today."""
    from dataclasses import replace

    from unisem.evaluate.protocols import evaluate
    from unisem.model import load_model
    from unisem.registry.promotion import evaluate_serving
    from unisem.model.inference_by_id import ServingModel

    cfg, data, text = trained["cfg"], trained["data"], trained["text"]
    new_ids = tuple(f"new{j}" for j in range(10))
    today = replace(data, item_ids=data.item_ids + new_ids, item_texts=data.item_texts + new_ids,
                    item_titles=data.item_titles + new_ids)
    today_text = np.concatenate([text, text[1:11] + 0.01])
    model = load_model(trained["good"].model_dir)
    yesterday = evaluate(model.score, data, cfg.evaluation, split="test", max_len=12, protocols=("full",),
                         slices=False).metric("full/NDCG@10")
    # without text for the new items they can never outrank a target: exactly yesterday's number
    blind = evaluate_serving(ServingModel(load_model(trained["good"].model_dir)), cfg, today, None, "full/NDCG@10")
    assert blind == pytest.approx(yesterday, abs=1e-12)
    serving = ServingModel(load_model(trained["good"].model_dir))
    seeing = evaluate_serving(serving, cfg, today, today_text, "full/NDCG@10")
    assert serving.added == list(new_ids)
    assert np.isfinite(seeing) and seeing < yesterday  # near-copies of known items now compete for the top


@pytest.mark.spark
@pytest.mark.slow
def test_recommend_stage_through_spark_submit_scores_every_user_with_the_champion(trained, store, monkeypatch):
    """The cluster path for real: the stage spark-submits jobs/recommend.py (to a local master here), which
    scores every user with whichever version holds champion, as the served model would answer them."""
    import pandas as pd
    import pyarrow.parquet as pq

    from unisem.pipeline import cluster, stages
    from unisem.pipeline.spec import make_spec
    from unisem.registry.promotion import promote_if_better

    cfg = trained["cfg"]
    features = trained["root"] / "features"
    layout = _layout(store, "batch-run", trained)
    reg = _register(cfg, layout, trained["good"], features_dir=features)
    assert promote_if_better(cfg, features, record_dir=layout.registry).promoted
    spec = make_spec("batch-run", None, [*TINY, "orchestration.spark_master=local[1]", "serving.batch_k=4"], store)
    monkeypatch.setattr(cluster, "spark_mode", lambda master: "spark-submit")
    commands = []
    real_run_logged = cluster.run_logged
    monkeypatch.setattr(cluster, "run_logged", lambda cmd, *a, **kw: commands.append(list(cmd)) or real_run_logged(cmd, *a, **kw))
    out = stages.recommend(spec, {"features_dir": str(features)}, {"promoted": True})
    (cmd,) = commands
    assert Path(cmd[0]).name == "spark-submit" and Path(cmd[cmd.index("--name") + 2]).name == "recommend.py"
    assert out["model_version"] == reg.version and out["users"] == len(trained["data"].user_ids) == 300
    table = pq.read_table(layout.recommendations).to_pandas()
    assert len(table) == 4 * 300 and not table.duplicated(["user_id", "rank"]).any()
    assert set(table["user_id"]) == set(trained["data"].user_ids) and set(table["rank"]) == {1, 2, 3, 4}
    assert set(table["model_version"]) == {reg.version} and set(table["run_id"]) == {"batch-run"}
    # the same top-4 as the served model gives these users' whole histories
    from unisem.registry.batch import user_histories

    users = user_histories(trained["data"]).iloc[:5]
    served = mlflow.pyfunc.load_model(f"models:/unisem/{reg.version}").predict(
        pd.DataFrame({"history": users["history"]}), params={"k": 4})
    for user, ids in zip(users["user_id"], served["item_ids"]):
        assert table[table.user_id == user].sort_values("rank")["item_id"].tolist() == list(ids)
    published = pq.read_table(store / "published" / "recommendations").to_pandas()
    assert len(published) == len(table)


def test_a_large_catalog_is_registered_with_its_item_index_and_served_from_it(trained, store):
    """index_min_items at the catalog's size: the index is built at registration, carried by the version
    (sha256 in the manifest), and the loaded model answers from it; calibrated to recall 1.0 it answers what
    exact search answers."""
    from dataclasses import replace

    from unisem.model.inference_by_id import ServingModel
    from unisem.model import load_model
    from unisem.registry.pyfunc_model import ITEM_INDEX_FILE, load_serving

    cfg = trained["cfg"]
    cfg = replace(cfg, registry=replace(cfg.registry, index_min_items=60, index_target_recall=1.0))
    result = _register(cfg, _layout(store, "run-idx", trained), trained["good"],
                       features_dir=trained["root"] / "features", embeddings_dir=trained["root"] / "embeddings")
    served = load_serving(result.model_uri)
    assert (served.model_dir / ITEM_INDEX_FILE).exists()
    assert served.serving.item_index is not None and served.serving.item_index.calibrated_recall == 1.0
    reqs = mlflow.pyfunc.get_model_dependencies(result.model_uri)
    assert any(line.startswith("faiss-cpu==") for line in Path(reqs).read_text().splitlines())
    exact = ServingModel(load_model(trained["good"].model_dir))
    histories = [[exact.item_ids[i - 1] for i in h] for h in trained["data"].histories[:20]]
    assert served.serving.recommend(histories, k=5).item_ids == exact.recommend(histories, k=5).item_ids

    # below the size no index is built: the default (1,000,000 items) leaves this catalog on exact search
    plain = _register(trained["cfg"], _layout(store, "run-plain", trained), trained["good"],
                      features_dir=trained["root"] / "features", embeddings_dir=trained["root"] / "embeddings")
    assert load_serving(plain.model_uri).serving.item_index is None
