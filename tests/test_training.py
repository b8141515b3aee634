"""``fit`` end to end on small data: loss, early stopping, checkpoints, resume, negatives, CLI (team B1)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from synthetic_sequences import chain_dataset
from unisem.config import DemoConfig, UnisemConfig, replace_in
from unisem.data.dataset import SequenceDataset, sequences_from_lists, write_features
from unisem.evaluate.protocols import evaluate
from unisem.model import load_model
from unisem.train import LocalRuntime, fit
from unisem.train.runtime import keep_catalog_buffers_local
from unisem.train.examples import length_batches, training_arrays, training_negatives


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_cfg(**training):
    return replace_in(
        UnisemConfig(),
        model={"dropout": 0.1},
        training={"max_epochs": 6, "batch_size": 64, "show_progress": False, "lr": 0.005, **training},
        quantizer={"codebook_size": 8, "code_dim": 16, "encoder_hidden": [32]},
        evaluation={"ks": [1, 5, 10]},
        data={"max_seq_len": 20},
    )


def hashed_text_embeddings(texts, dim: int = 64) -> np.ndarray:
    """A cheap deterministic text embedding (hashed bag of words) standing in for the sentence encoder."""
    out = np.zeros((len(texts) + 1, dim), dtype=np.float32)
    for i, text in enumerate(texts, start=1):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
        out[i] /= max(np.linalg.norm(out[i]), 1e-6)
    return out


def demo_dataset(items: int = 200, users: int = 500) -> SequenceDataset:
    from unisem.data.demo import generate_demo

    demo = generate_demo(DemoConfig(items=items, users=users, seed=7))
    cat = demo.catalog.to_pylist()
    item_ids = [r["item_id"] for r in cat]
    texts = [f"{r['title']} {r['brand']} {' '.join(r['categories'] or [])}" for r in cat]
    rows = sorted(demo.interactions.to_pylist(), key=lambda r: (r["user_id"], r["timestamp"], r["position"]))
    seqs: dict[str, list[str]] = {}
    for r in rows:
        seqs.setdefault(r["user_id"], []).append(r["item_id"])
    return sequences_from_lists(seqs, item_ids, texts, max_seq_len=20)


def popularity_scores(data: SequenceDataset):
    counts = np.bincount(np.concatenate(data.histories), minlength=data.num_items + 1).astype(np.float32)
    counts[0] = -np.inf
    table = torch.from_numpy(counts)
    return lambda h: table.expand(h.shape[0], -1).clone()


def test_loss_falls_and_history_is_reported_each_epoch(tmp_path, caplog):
    import logging

    data, text = chain_dataset()
    runtime = LocalRuntime()
    seen = []
    with caplog.at_level(logging.INFO, logger="unisem.train.loop"):
        result = fit(tiny_cfg(max_epochs=4), data, text, tmp_path, runtime, on_epoch=seen.append)
    assert seen == result.history  # handed over as each epoch ends (the live MLflow metrics)
    lines = [r.getMessage() for r in caplog.records if r.name == "unisem.train.loop"]
    assert len(lines) == 4 and lines[0].startswith("epoch 1/4 loss ") and " valid NDCG@10 " in lines[0]
    assert lines[0].endswith("(best)")
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert len(runtime.reports) == 4 and runtime.reports[-1]["checkpoint_dir"] == str(tmp_path / "checkpoint")
    assert {"rec_loss", "commit_loss", "recon_loss", "train_seconds", "valid_seconds", "valid/NDCG@10"} <= set(result.history[0])
    assert result.best_metrics["NDCG@10"] == max(h["valid/NDCG@10"] for h in result.history)
    assert (result.model_dir / "weights.safetensors").exists()


@pytest.mark.parametrize("variant,loss", [("unified", "ce"), ("id-only", "bce")])
def test_trained_model_beats_popularity_on_demo_data(tmp_path, variant, loss):
    data = demo_dataset()
    text = hashed_text_embeddings(data.item_texts)
    cfg = replace_in(tiny_cfg(max_epochs=10, loss=loss, patience=3), model={"variant": variant, "dropout": 0.2})
    result = fit(cfg, data, text, tmp_path)
    model = load_model(result.model_dir)
    ours = evaluate(model.score, data, cfg.evaluation, split="test", max_len=20, protocols=("full",), slices=False)
    pop = evaluate(popularity_scores(data), data, cfg.evaluation, split="test", max_len=20, protocols=("full",), slices=False)
    assert ours.protocols["full"]["NDCG@10"] > 1.2 * pop.protocols["full"]["NDCG@10"]


def test_same_seed_same_training_and_early_stopping(tmp_path):
    data, text = chain_dataset(users=120)
    cfg = tiny_cfg(max_epochs=30, patience=2, lr=0.02)
    a = fit(cfg, data, text, tmp_path / "a")
    b = fit(cfg, data, text, tmp_path / "b")
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert len(a.history) < 30 and len(a.history) == a.best_epoch + 2  # stopped `patience` epochs after the best


# sparse: lazy Adam on a sparse ID table (the large-catalog path), whose state the checkpoint carries too
@pytest.mark.parametrize("extra", [{}, {"loss": "sampled", "sparse_id_min_items": 1}], ids=["dense", "sparse"])
def test_checkpoint_resume_continues_where_it_stopped(tmp_path, extra):
    data, text = chain_dataset(users=120)
    straight = fit(tiny_cfg(max_epochs=4, patience=10, **extra), data, text, tmp_path / "straight")
    fit(tiny_cfg(max_epochs=2, patience=10, **extra), data, text, tmp_path / "resumed")
    resumed = fit(tiny_cfg(max_epochs=4, patience=10, **extra), data, text, tmp_path / "resumed",
                  LocalRuntime(resume=tmp_path / "resumed" / "checkpoint"))
    assert len(resumed.history) == 4
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["loop"]["epoch"] == 4 and (tmp_path / "resumed" / "checkpoint" / "best" / "weights.safetensors").exists()


def test_bce_negatives_never_include_the_users_items_or_cold_items():
    data, _ = chain_dataset(items=30, users=50, cold=5)
    arrays = training_arrays(data, 20)
    warm = torch.as_tensor(np.setdiff1d(np.arange(1, 31), data.cold_items))
    seen = torch.from_numpy(arrays.seen)
    neg = training_negatives(seen, (50, 20), warm, torch.Generator().manual_seed(0))
    for u in range(50):
        assert not set(neg[u].tolist()) & set(data.histories[u].tolist())
    assert not set(neg.flatten().tolist()) & set(data.cold_items.tolist())


def test_cold_items_are_never_training_targets_nor_scored_up_in_training(tmp_path):
    data, text = chain_dataset(cold=6)
    arrays = training_arrays(data, 20)
    assert not set(arrays.targets.flatten().tolist()) & set(data.cold_items.tolist())
    result = fit(tiny_cfg(max_epochs=2), data, text, tmp_path)
    model = load_model(result.model_dir)
    table = model.table
    unknown = model.network.items.ids.weight[data.num_items + 1]
    for c in data.cold_items:
        assert torch.equal(table[c, -unknown.shape[0]:], unknown)


def test_training_examples_are_all_prefixes():
    data = sequences_from_lists({"u": ["a", "b", "c", "d", "e", "f"]}, list("abcdef"))
    arrays = training_arrays(data, 5)
    # history a b c d (e, f held out): inputs a b c -> targets b c d
    assert arrays.inputs[0].tolist() == [0, 0, 1, 2, 3] and arrays.targets[0].tolist() == [0, 0, 2, 3, 4]


def test_length_batches_cover_every_user_once():
    order = np.random.default_rng(0).permutation(100)
    lengths = np.random.default_rng(1).integers(1, 50, 100)
    batches = length_batches(order, lengths, 8, 4, np.random.default_rng(2))
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    assert max(len(b) for b in batches) == 8


@pytest.mark.parametrize("extra", [{"loss": "bce"}, {"loss": "sampled", "sparse_id_min_items": 1}], ids=["bce", "sparse-ids"])
def test_fit_works_through_a_ddp_wrapper(tmp_path, extra):
    import torch.distributed as dist

    wrapped = []

    class DDPRuntime(LocalRuntime):
        def prepare_model(self, model):
            wrapped.append(torch.nn.parallel.DistributedDataParallel(keep_catalog_buffers_local(model)))
            return wrapped[-1]

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        data, text = chain_dataset(users=80)
        result = fit(tiny_cfg(max_epochs=2, **extra), data, text, tmp_path / "out", DDPRuntime())
    finally:
        dist.destroy_process_group()
    assert load_model(result.model_dir).score(torch.tensor([[0, 1, 2]])).shape == (1, data.num_items + 1)
    # the catalog's text embeddings are not broadcast at every forward; the codebooks' EMA state still is
    broadcast = {id(b) for b in wrapped[0].modules_buffers}
    network = wrapped[0].module
    assert id(network.items.text) not in broadcast and id(network.items.rqvae.quantizer.codebooks) in broadcast


def test_cli_train_and_recommend(tmp_path, capsys):
    from safetensors.numpy import save_file

    from unisem.cli import main

    data, text = chain_dataset(users=100)
    write_features(data, tmp_path / "features")
    (tmp_path / "emb").mkdir()
    save_file({"embeddings": text}, str(tmp_path / "emb" / "item_embeddings.safetensors"))
    (tmp_path / "emb" / "meta.json").write_text("{}")
    sets = ["--set", "training.max_epochs=2", "--set", "training.show_progress=false", "--set", "quantizer.codebook_size=8",
            "--set", "quantizer.code_dim=16", "--set", "quantizer.encoder_hidden=[32]"]
    assert main(["train", "--features", str(tmp_path / "features"), "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "t"), *sets]) == 0
    capsys.readouterr()
    assert main(["recommend", "--model", str(tmp_path / "t" / "model"), "--history", "i0,i6", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and [ln.split("\t")[0] for ln in lines] == ["1", "2", "3"]
    assert not {ln.split("\t")[1] for ln in lines} & {"i0", "i6"}
    user = data.user_ids[0]
    assert main(["recommend", "--model", str(tmp_path / "t" / "model"), "--user", user, "--features", str(tmp_path / "features"), "-k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["recommend", "--model", str(tmp_path / "t" / "model"), "--history", "nope", "-k", "2"]) == 1


def test_validation_sample_is_fixed_seeded_and_bounded(tmp_path):
    from unisem.train.loop import validation_users

    data, text = chain_dataset(users=40)
    assert validation_users(data, 0, 1) is data and validation_users(data, 40, 1) is data
    sample = validation_users(data, 7, 3)
    assert sample.num_users == 7 and sample.item_ids == data.item_ids
    again = validation_users(data, 7, 3)
    assert sample.user_ids == again.user_ids  # the same users every epoch
    rows = [data.user_ids.index(u) for u in sample.user_ids]
    assert rows == sorted(rows)
    for u, r in zip(sample.user_ids, rows):
        i = sample.user_ids.index(u)
        assert np.array_equal(sample.histories[i], data.histories[r])
        assert sample.valid_items[i] == data.valid_items[r] and sample.test_items[i] == data.test_items[r]
    assert validation_users(data, 7, 4).user_ids != sample.user_ids

    result = fit(tiny_cfg(valid_users=5, max_epochs=1), data, text, tmp_path)  # trains on all, validates on 5
    assert result.best_epoch == 1


def test_saved_semantic_ids_are_the_saved_weights_codes(tmp_path):
    from safetensors.numpy import load_file

    data, text = chain_dataset(users=60)
    result = fit(tiny_cfg(max_epochs=2), data, text, tmp_path)
    stored = load_file(str(result.model_dir / "codebooks.safetensors"))["semantic_ids"]
    assert np.array_equal(stored, load_model(result.model_dir).semantic_ids)


def test_sparse_id_updates_touch_only_the_rows_a_step_used():
    """Lazy Adam: one step moves the ID rows of the step's items and leaves every other row as it was."""
    from unisem.model import build_network
    from unisem.train.examples import draw_pool, pool_sampler
    from unisem.train.optimizer import TrainingOptimizer

    data, text = chain_dataset(users=40)
    cfg = tiny_cfg(loss="sampled", sparse_id_min_items=1, num_negatives=4)
    assert cfg.training.sparse_ids_for(data.num_items)
    assert not replace_in(cfg, training={"loss": "ce"}).training.sparse_ids_for(data.num_items)
    assert not replace_in(cfg, training={"sparse_id_min_items": data.num_items + 1}).training.sparse_ids_for(data.num_items)
    torch.manual_seed(0)
    net = build_network(cfg, data.num_items, text, data.cold_items).train()
    opt = TrainingOptimizer(net, 0.01, 0.0, torch.device("cpu"))
    assert [type(o).__name__ for o in opt.parts] == ["Adam", "SparseAdam"]
    arrays = training_arrays(data, 20)
    rows = np.arange(4)
    inputs, targets = torch.from_numpy(arrays.inputs[rows]), torch.from_numpy(arrays.targets[rows])
    pool = draw_pool(targets, 4, pool_sampler(arrays.targets, data.num_items, data.cold_items, "uniform"), torch.Generator().manual_seed(0))
    before = net.items.ids.weight.detach().clone()
    net(inputs, targets, pool=pool, seen=torch.from_numpy(arrays.seen[rows])).total.backward()
    opt.step()
    moved = (net.items.ids.weight.detach() != before).any(1)
    used = torch.zeros_like(moved)
    used[torch.cat([inputs.ravel(), targets.ravel(), pool.items])] = True
    used[0] = False
    assert moved.any() and not (moved & ~used).any()
    with pytest.warns(UserWarning, match="weight_decay"):  # said, not silently dropped
        TrainingOptimizer(net, 0.01, 0.1, torch.device("cpu"))


def test_auto_loss_is_ce_for_small_catalogs_and_sampled_for_large_ones(tmp_path):
    t = UnisemConfig().training
    assert t.loss == "auto"
    assert t.loss_for(t.sampled_min_items - 1) == "ce" and t.loss_for(t.sampled_min_items) == "sampled"
    assert replace_in(UnisemConfig(), training={"loss": "bce"}).training.loss_for(10**7) == "bce"
    auto = replace_in(UnisemConfig(), training={"sampled_min_items": 1}).training
    assert auto.sparse_ids_for(10**6) and not replace_in(UnisemConfig(), training={"loss": "ce"}).training.sparse_ids_for(10**6)
    # fit decides once, and the saved model's configuration says which loss it trained with
    data, text = chain_dataset(users=60)
    result = fit(tiny_cfg(max_epochs=1, sampled_min_items=1), data, text, tmp_path / "out")
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["config"]["training"]["loss"] == "sampled"


def test_dropout_keeps_the_expected_value_drops_its_share_and_is_off_in_eval():
    from unisem.model.backbone import Dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    layer = Dropout(0.3).train()
    y = layer(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(layer.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
