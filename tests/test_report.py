"""evaluate_model_dir and ``unisem evaluate``: on a real saved model, and on a scripted model for exact values."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from evaluation_datasets import cyclic_dataset, next_item_scorer

import unisem.model
from unisem.cli import main
from unisem.config import replace_in
from unisem.config.schema import UnisemConfig
from unisem.data.dataset import write_features
from unisem.evaluate.saved_model import evaluate_model_dir, format_report

NUM_ITEMS = 150


class ScriptedModel:
    """Stands in for ``unisem.model.Recommender`` where exact metric values are needed (a perfect scorer)."""

    def __init__(self, item_ids, semantic_ids=None):
        self.item_ids = tuple(item_ids)
        self.item_titles = self.item_ids
        self.config = replace_in(UnisemConfig(), quantizer={"levels": 2, "codebook_size": 8}, model={"id_dim": 8})
        self.semantic_ids = semantic_ids
        self.score = next_item_scorer(len(item_ids))

    def scorer(self):
        """What ``evaluate`` ranks with: here the plain score function (a Recommender gives its trimmed one)."""
        return self.score


@pytest.fixture
def features(tmp_path):
    data = cyclic_dataset(num_users=120, num_items=NUM_ITEMS)
    return data, write_features(data, tmp_path / "features")


def test_report_of_a_scripted_model(tmp_path, features, monkeypatch):
    data, folder = features
    codes = np.vstack([[-1, -1], np.stack([np.arange(NUM_ITEMS) % 8, np.arange(NUM_ITEMS) // 8 % 4], axis=1)])
    monkeypatch.setattr(unisem.model, "load_model", lambda _dir: ScriptedModel(data.item_ids, codes))
    out = tmp_path / "evaluation"
    history = [{"epoch": e, "loss": 1.0 / e, "valid/NDCG@10": 0.1 * e} for e in (1, 2, 3)]
    result = evaluate_model_dir(tmp_path / "model", folder, UnisemConfig(), split="test", out_dir=out, history=history)
    assert result["split"] == "test" and result["users"] == 120 and result["items"] == NUM_ITEMS
    assert result["metrics"]["full/HR@1"] == 1.0 and result["metrics"]["sampled-99/HR@1"] == 1.0
    assert sum(result["slices"][s]["users"] for s in ("head", "torso", "tail")) == 120
    diag = result["diagnostics"]
    assert diag["codebook_usage"] == [1.0, 0.5]
    # 150 items over 8 x 4 = 32 tuples: every tuple is shared.
    assert diag["collision_rate"] == 1.0
    assert diag["embedding_params"] == NUM_ITEMS * 8 + 2 * 8 * 64
    written = json.loads((out / "metrics.json").read_text())
    assert written["metrics"] == result["metrics"]
    table = pq.read_table(out / "semantic_ids.parquet")
    assert table.num_rows == NUM_ITEMS and table["semantic_id"].to_pylist()[9] == [1, 1]
    assert (out / "codebook_usage.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    text = format_report(result)
    assert "sampled-99" in text and "full" in text and "collision rate 100.00%" in text


def test_model_and_features_of_different_catalogs_are_refused(tmp_path, features, monkeypatch):
    data, folder = features
    ids = list(data.item_ids)
    ids[4] = "other"
    monkeypatch.setattr(unisem.model, "load_model", lambda _dir: ScriptedModel(ids))
    out = tmp_path / "evaluation"
    with pytest.raises(ValueError, match="item index 5 is 'other'"):
        evaluate_model_dir(tmp_path / "model", folder, UnisemConfig(), out_dir=out)
    assert not out.exists(), "nothing is written when evaluation fails"
    monkeypatch.setattr(unisem.model, "load_model", lambda _dir: ScriptedModel(ids[:-1]))
    with pytest.raises(ValueError, match="trained on 149 items"):
        evaluate_model_dir(tmp_path / "model", folder, UnisemConfig())


def small_config(variant: str) -> UnisemConfig:
    return replace_in(
        UnisemConfig(),
        model={"variant": variant, "num_blocks": 1, "ffn_dim": 32},
        quantizer={"levels": 2, "codebook_size": 16, "code_dim": 16, "encoder_hidden": [32], "kmeans_iters": 2},
        data={"max_seq_len": 10},
    )


@pytest.mark.parametrize("variant", ["unified", "id-only"])
def test_real_saved_model_through_the_cli(tmp_path, features, variant, capsys):
    from unisem.model import build_network, save_model

    data, folder = features
    cfg = small_config(variant)
    text = np.random.default_rng(0).normal(size=(NUM_ITEMS + 1, 12)).astype(np.float32)
    text[0] = 0
    network = build_network(cfg, NUM_ITEMS, text, data.cold_items)
    model_dir = save_model(network, cfg, data.item_ids, data.item_titles, tmp_path / "model")
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--model", str(model_dir), "--features", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "full" in printed and "sampled-99" in printed and "wrote" in printed
    result = json.loads((out / "metrics.json").read_text())
    for protocol in ("full", "sampled-99"):
        assert 0.0 <= result["protocols"][protocol]["NDCG@10"] <= 1.0
    assert result["diagnostics"]["variant"] == variant
    if variant == "unified":
        assert len(result["diagnostics"]["codebook_usage"]) == 2
        assert (out / "semantic_ids.parquet").exists()
    else:
        assert "codebook_usage" not in result["diagnostics"] and not (out / "semantic_ids.parquet").exists()
    # Same model, same data, same seed: a rerun reproduces every figure.
    again = evaluate_model_dir(model_dir, folder, UnisemConfig())
    assert again["metrics"] == result["metrics"]


def test_cli_reports_a_missing_model_folder(tmp_path, features, capsys):
    _, folder = features
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--features", str(folder)]) == 1
    assert "nope" in capsys.readouterr().err


def test_cli_json_output_of_the_valid_split(tmp_path, features, monkeypatch, capsys):
    data, folder = features
    monkeypatch.setattr(unisem.model, "load_model", lambda _dir: ScriptedModel(data.item_ids))
    args = ["evaluate", "--model", str(tmp_path / "m"), "--features", str(folder), "--split", "valid", "--json"]
    assert main([*args, "--set", "evaluation.ks=[1,3]"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "valid"
    assert set(printed["protocols"]["full"]) == {"HR@1", "HR@3", "NDCG@1", "NDCG@3", "MRR"}
