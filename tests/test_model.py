"""SASRec backbone masks, item-table variants, losses and the saved model folder (team B1)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unisem.config import UnisemConfig, replace_in
from unisem.model import build_network, load_model, save_model
from unisem.model.backbone import SASRec
from unisem.model.losses import bce_loss, ce_loss


pytestmark = pytest.mark.usefixtures("single_thread")


def small_cfg(**model):
    return replace_in(
        UnisemConfig(),
        model={"dropout": 0.0, "id_dim": 8, **model},
        quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2},
        data={"max_seq_len": 10},
    )


def net_for(variant="unified", items=20, cold=(3,), **model):
    text = np.random.default_rng(0).normal(size=(items + 1, 12)).astype(np.float32)
    text[0] = 0
    return build_network(small_cfg(variant=variant, **model), items, text, np.asarray(cold))


def test_no_position_sees_a_later_one():
    sas = SASRec(8, 10, blocks=2, heads=2, ffn=16, dropout=0.0).eval()
    x = torch.randn(2, 6, 8)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    before = sas(x, pad)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 8)
    after = sas(x2, pad)
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_padding_is_masked_and_trimming_it_changes_nothing():
    sas = SASRec(8, 10, blocks=2, heads=2, ffn=16, dropout=0.0).eval()
    x = torch.randn(1, 6, 8)
    pad = torch.tensor([[True, True, False, False, False, False]])
    out = sas(x, pad)
    assert torch.all(out[0, :2] == 0)
    noisy = x.clone()
    noisy[0, :2] = torch.randn(2, 8) * 100  # whatever sits in padding slots must not matter
    assert torch.allclose(sas(noisy, pad)[0, 2:], out[0, 2:], atol=1e-5)
    # Positions count from the right: the trimmed batch gets exactly the same states.
    assert torch.allclose(sas(x[:, 2:], pad[:, 2:])[0], out[0, 2:], atol=1e-5)
    assert not torch.isnan(out).any()


@pytest.mark.parametrize("variant,dim", [("unified", 8 + 8), ("id-only", 64), ("semantic-only", 8)])
def test_item_table_width_and_padding_row(variant, dim):
    net = net_for(variant).eval()
    table = net.item_table()
    assert table.vectors.shape == (21, dim)
    assert torch.all(table.vectors[0] == 0)
    assert (table.codes is None) == (variant == "id-only")
    if table.codes is not None:
        assert table.codes.shape == (21, 2) and torch.all(table.codes[0] == -1)


def test_cold_items_use_the_unknown_id_vector():
    net = net_for("id-only", cold=(3, 7)).eval()
    table = net.item_table().vectors
    unknown = net.items.ids.weight[21]
    assert torch.equal(table[3], unknown) and torch.equal(table[7], unknown)
    assert not torch.equal(table[4], unknown)


def test_id_dropout_replaces_ids_only_in_training():
    net = net_for("id-only", cold=(), id_dropout=1.0)
    unknown = net.items.ids.weight[21]
    assert torch.all(net.train().items().vectors[1:] == unknown)
    assert not torch.all(net.eval().item_table().vectors[1:] == unknown)


def test_batch_table_matches_full_table_for_batch_items():
    net = net_for("unified").train()
    net.items.refresh_codes()  # k-means init on all items
    net.eval()
    full = net.items()
    batch = torch.tensor([2, 5, 9])
    part = net.items(batch_items=batch)
    assert torch.allclose(part.vectors, full.vectors, atol=1e-6)  # cached codes agree after a refresh
    assert torch.equal(part.codes, full.codes)


def test_bce_and_ce_losses_against_hand_computed_values():
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    states = torch.tensor([[2.0, 0.0]])
    bce = bce_loss(states, torch.tensor([1]), torch.tensor([2]), table)
    expected = -np.log(1 / (1 + np.exp(-2.0))) - np.log(1 - 0.5)
    assert bce.item() == pytest.approx(expected, rel=1e-5)
    blocked = torch.tensor([True, False, False, True])
    ce = ce_loss(states, torch.tensor([1]), table, blocked)
    assert ce.item() == pytest.approx(-np.log(np.exp(2) / (np.exp(2) + np.exp(0))), rel=1e-5)


def test_joint_loss_parts_add_up():
    net = net_for("unified").train()
    net.items.refresh_codes()  # as fit does at each epoch: k-means on all items first
    inputs = torch.tensor([[0, 1, 2, 4, 6, 8, 10, 12], [5, 7, 9, 11, 13, 14, 15, 16]])
    targets = torch.tensor([[0, 2, 4, 6, 8, 10, 12, 14], [7, 9, 11, 13, 14, 15, 16, 17]])
    loss = net(inputs, targets)
    assert loss.total.item() == pytest.approx((loss.rec + loss.commit + loss.recon).item(), rel=1e-6)
    assert loss.commit.item() > 0 and loss.recon.item() > 0


def test_save_and_load_gives_identical_scores(tmp_path):
    net = net_for("unified").train()
    net.items.refresh_codes()
    net.eval()
    cfg = small_cfg(variant="unified")
    ids, titles = [f"item{i}" for i in range(1, 21)], [f"Title {i}" for i in range(1, 21)]
    save_model(net, cfg, ids, titles, tmp_path / "model")
    hist = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    from unisem.model import Recommender

    expected = Recommender(net, cfg, ids, titles).score(hist)
    model = load_model(tmp_path / "model")
    assert torch.equal(model.score(hist), expected)
    assert model.item_ids == tuple(ids) and model.item_titles == tuple(titles)
    assert model.semantic_ids.shape == (21, 2) and model.config == cfg
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "codebooks.safetensors", "config.json", "items.json", "weights.safetensors"]
    assert json.loads((tmp_path / "model" / "items.json").read_text())["cold_items"] == [3]


def test_recommend_never_returns_padding_or_seen_items():
    net = net_for("id-only").eval()
    from unisem.model import Recommender

    rec = Recommender(net, small_cfg(variant="id-only"), [str(i) for i in range(20)], [""] * 20)
    hist = torch.tensor([[0, 0, 1, 2, 3]])
    scores = rec.score(hist)
    assert scores.shape == (1, 21) and scores[0, 0] == float("-inf")
    items, top = rec.recommend(hist, k=17)  # exactly the unseen items
    assert not set(items[0].tolist()) & {0, 1, 2, 3}
    assert len(set(items[0].tolist())) == 17 and torch.isfinite(top).all()


def test_loading_a_folder_that_is_not_a_model_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights.safetensors"):
        load_model(tmp_path)


def test_cpu_training_attention_is_the_fused_attention_with_its_dropout_mask(monkeypatch):
    """With every dropout mask set to keep (x1), the CPU training path's own attention equals torch's."""
    from unisem.model import backbone

    torch.manual_seed(0)
    sas = SASRec(8, 10, blocks=2, heads=2, ffn=16, dropout=0.3)
    x = torch.randn(3, 6, 8)
    padding = torch.tensor([[True, True, False, False, False, False]] + [[False] * 6] * 2)
    want = sas.eval()(x, padding)
    monkeypatch.setattr(backbone, "keep_mask", lambda shape, p, dtype: torch.ones(shape, dtype=dtype))
    got = sas.train()(x, padding)
    assert torch.allclose(got, want, atol=1e-6)
    monkeypatch.undo()
    assert not torch.allclose(sas.train()(x, padding), want, atol=1e-3)  # and the real mask does drop
