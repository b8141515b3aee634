"""Sampled softmax with logQ correction: its maths, its pool, and training with it end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthetic_sequences import chain_dataset
from unisem.config import UnisemConfig, replace_in
from unisem.model import build_network
from unisem.model.losses import ce_loss, sampled_softmax_loss
from unisem.model.network import own_positives, reconstruction_sample
from unisem.train import fit
from unisem.train.examples import draw_pool, pool_sampler, training_arrays

pytestmark = pytest.mark.usefixtures("single_thread")


def test_pool_of_the_whole_catalog_with_constant_log_q_is_the_full_softmax():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(11, 6, generator=g)
    states = torch.randn(7, 6, generator=g)
    blocked = torch.zeros(11, dtype=torch.bool)
    blocked[[0, 4]] = True  # padding and a cold item: never classes
    warm = torch.nonzero(~blocked)[:, 0]
    targets = warm[torch.randint(0, len(warm), (7,), generator=g)]
    full = ce_loss(states, targets, table, blocked)
    for constant in (0.0, 2.5):
        sampled = sampled_softmax_loss(states, targets, table, warm, torch.full((11,), constant))
        assert torch.allclose(sampled, full, atol=1e-6)


def test_log_q_correction_against_hand_computed_values():
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    states = torch.tensor([[2.0, 1.0]])
    log_q = torch.tensor([0.0, math.log(2.0), math.log(0.5), 0.0])
    pool = torch.tensor([1, 2, 3])
    # target 1: logits 2 - log 2 (target), then pool 2: 1 - log 0.5, pool 3: 3 (pool 1 = the target, dropped)
    logits = torch.tensor([2 - math.log(2.0), 1 - math.log(0.5), 3.0])
    expected = -torch.log_softmax(logits, 0)[0]
    got = sampled_softmax_loss(states, torch.tensor([1]), table, pool, log_q)
    assert torch.allclose(got, expected, atol=1e-6)
    # the user's own positive 3 excluded: only 2 is left as negative
    excluded = torch.tensor([[False, False, True]])
    got = sampled_softmax_loss(states, torch.tensor([1]), table, pool, log_q, excluded)
    assert torch.allclose(got, -torch.log_softmax(logits[:2], 0)[0], atol=1e-6)


def test_own_positives_marks_exactly_each_users_items():
    seen = torch.tensor([[0, 0, 3, 5], [1, 2, 3, 4], [0, 0, 0, 0]])
    pool = torch.tensor([1, 3, 5, 7])
    hit = own_positives(seen, pool, num_items=7)
    assert hit.tolist() == [[False, True, True, False], [True, True, False, False], [False] * 4]


def test_pool_holds_every_target_no_cold_item_and_true_expected_counts():
    targets = np.array([[0, 1, 2, 2], [0, 0, 3, 1]])
    sampler = pool_sampler(targets, num_items=6, cold_items=np.array([5]), distribution="uniform")
    assert sampler.warm_items.tolist() == [1, 2, 3, 4, 6]
    pool = draw_pool(torch.from_numpy(targets), 50, sampler, torch.Generator().manual_seed(1))
    items = pool.items.tolist()
    assert {1, 2, 3} <= set(items) and 5 not in items and 0 not in items
    # item 2: 2 of the 5 training targets, 5 real positions here; 50 uniform draws over 5 warm items
    assert math.isclose(float(pool.log_q[items.index(2)]), math.log(5 * 2 / 5 + 50 / 5), rel_tol=1e-6)
    # each position's target carries its own rate (0 at padding)
    assert math.isclose(float(pool.target_log_q[0, 2]), math.log(5 * 2 / 5 + 50 / 5), rel_tol=1e-6)
    assert float(pool.target_log_q[0, 0]) == 0.0 and float(pool.target_log_q[1, 1]) == 0.0


def test_capped_in_batch_negatives_sample_positions_and_correct_for_that_rate():
    """With in_batch=2 of 5 real positions, the pool holds targets of 2 sampled positions (and the draws),
    and every rate counts 2 positions, not 5, so the correction matches how items really enter the pool."""
    targets = np.array([[0, 1, 2, 2], [0, 0, 3, 1]])
    sampler = pool_sampler(targets, num_items=6, cold_items=np.array([5]), distribution="uniform")
    pool = draw_pool(torch.from_numpy(targets), 1, sampler, torch.Generator().manual_seed(1), in_batch=2)
    items = pool.items.tolist()
    assert 2 <= len(items) <= 3 and 0 not in items and 5 not in items
    share = sampler.target_share.numpy()
    expected = {i: math.log(2 * share[i] + 1 / 5) for i in range(1, 7) if i != 5}
    for i, value in zip(items, pool.log_q.tolist()):
        assert math.isclose(value, expected[i], rel_tol=1e-6)
    # a target outside the pool still has the rate it would have entered it at
    assert math.isclose(float(pool.target_log_q[1, 2]), expected[3], rel_tol=1e-6)
    # the sampled positions follow the seed, and a cap at or above the positions changes nothing
    again = draw_pool(torch.from_numpy(targets), 1, sampler, torch.Generator().manual_seed(1), in_batch=2)
    assert again.items.tolist() == items
    whole = draw_pool(torch.from_numpy(targets), 1, sampler, torch.Generator().manual_seed(1), in_batch=5)
    assert {1, 2, 3} <= set(whole.items.tolist())
    pop = pool_sampler(targets, 6, np.array([5]), "popularity")
    assert float(pop.draw_probs[5]) == 0.0 and float(pop.draw_probs[2]) > float(pop.draw_probs[4]) > 0.0


def small_cfg(**training):
    return replace_in(
        UnisemConfig(),
        model={"dropout": 0.0, "id_dim": 8},
        quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2},
        data={"max_seq_len": 10},
        training={"loss": "sampled", **training},
    )


def test_a_users_positives_never_act_as_its_negatives():
    """Moving a user's own (non-target) positive anywhere in score space leaves its loss unchanged."""
    g = torch.Generator().manual_seed(3)
    table = torch.randn(9, 4, generator=g, requires_grad=True)
    states = torch.randn(1, 4, generator=g)
    seen = torch.tensor([[1, 2, 6]])
    pool = torch.arange(1, 9)
    excluded = own_positives(seen, pool, num_items=8)
    loss = sampled_softmax_loss(states, torch.tensor([2]), table, pool, torch.zeros(9), excluded)
    loss.backward()
    grad_rows = table.grad.abs().sum(1)
    # the user's other positives (1 and 6) take no part; the true negatives all do
    assert float(grad_rows[1]) == 0.0 and float(grad_rows[6]) == 0.0
    assert all(float(grad_rows[j]) > 0.0 for j in (3, 4, 5, 7, 8))


def test_touched_items_table_gives_the_same_loss_as_the_full_catalog_table():
    data, text = chain_dataset(users=40)
    arrays = training_arrays(data, 10)
    rows = np.arange(16)
    inputs, targets = torch.from_numpy(arrays.inputs[rows]), torch.from_numpy(arrays.targets[rows])
    sampler = pool_sampler(arrays.targets, data.num_items, data.cold_items, "uniform")
    # a capped pool: some targets are outside it, and the touched table must still hold them
    pool = draw_pool(targets, 8, sampler, torch.Generator().manual_seed(0), in_batch=10)
    assert not set(targets[targets > 0].tolist()) <= set(pool.items.tolist())
    seen = torch.from_numpy(arrays.seen[rows])
    losses = {}
    for mode in ("batch", "full"):
        torch.manual_seed(0)
        net = build_network(small_cfg(item_table=mode), data.num_items, text, data.cold_items).eval()
        losses[mode] = net(inputs, targets, pool=pool, seen=seen).rec
    assert torch.allclose(losses["batch"], losses["full"], atol=1e-5)


def test_fit_with_sampled_loss_learns(tmp_path):
    data, text = chain_dataset()
    cfg = replace_in(
        UnisemConfig(),
        model={"dropout": 0.1},
        training={"max_epochs": 4, "batch_size": 64, "show_progress": False, "lr": 0.005, "loss": "sampled", "num_negatives": 16},
        quantizer={"codebook_size": 8, "code_dim": 16, "encoder_hidden": [32]},
        evaluation={"ks": [1, 5, 10]},
        data={"max_seq_len": 20},
    )
    result = fit(cfg, data, text, tmp_path)
    losses = [h["rec_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.best_metrics["NDCG@10"] > 0.2
    assert all(np.isfinite(h["loss"]) for h in result.history)


def test_unknown_loss_name_is_refused_naming_the_key():
    from unisem.config.loader import ConfigError, build

    with pytest.raises(ConfigError, match="training.loss"):
        build(UnisemConfig, {"training": {"loss": "softmax"}})


def reference_sampled_softmax(states, targets, table, pool, log_q, excluded):
    """The sampled softmax written plainly (pool logits, masked, the target's column first, cross-entropy),
    for checking the fused pool gradient against autograd."""
    pos = (states * table[targets]).sum(-1) - log_q[targets]
    neg = states @ table[pool].T - log_q[pool][None, :]
    neg = neg.masked_fill((pool[None, :] == targets[:, None]) | excluded, float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))


def test_fused_pool_gradient_equals_autograd_of_the_plain_loss():
    g = torch.Generator().manual_seed(5)
    states = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 9, (12,), generator=g)
    pool, log_q = torch.arange(1, 9), torch.randn(9, generator=g, dtype=torch.float64)
    excluded = torch.rand(12, 8, generator=g) < 0.3
    excluded[0] = True  # a row with every pool column excluded: only its target's column is left
    got = sampled_softmax_loss(states, targets, table, pool, log_q, excluded)
    want = reference_sampled_softmax(states, targets, table, pool, log_q, excluded)
    assert torch.allclose(got, want, atol=1e-12)
    got_grads = torch.autograd.grad(got, (states, table))
    want_grads = torch.autograd.grad(want, (states, table))
    for a, b in zip(got_grads, want_grads):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-12)


def test_reconstruction_uses_a_uniform_sample_of_the_batch_items_capped_by_recon_rows(monkeypatch):
    data, text = chain_dataset(users=40)
    arrays = training_arrays(data, 10)
    rows = np.arange(32)
    inputs, targets = torch.from_numpy(arrays.inputs[rows]), torch.from_numpy(arrays.targets[rows])
    batch_items = set(torch.unique(torch.cat([inputs[inputs > 0], targets[targets > 0]])).tolist())
    sampler = pool_sampler(arrays.targets, data.num_items, data.cold_items, "uniform")
    pool = draw_pool(targets, 8, sampler, torch.Generator().manual_seed(0))
    seen = torch.from_numpy(arrays.seen[rows])
    assert len(batch_items) > 6
    for cap, train, expected in ((6, True, 6), (0, True, len(batch_items)), (6, False, len(batch_items))):
        net = build_network(small_cfg(recon_rows=cap), data.num_items, text, data.cold_items).train(train)
        seen_rows = []
        rows_of = net.items.rows
        monkeypatch.setattr(net.items, "rows", lambda items, recon_rows=None: seen_rows.append(recon_rows) or rows_of(items, recon_rows))
        torch.manual_seed(0)
        net(inputs, targets, pool=pool, seen=seen)
        (recon,) = seen_rows
        assert len(recon) == expected and set(recon.tolist()) <= batch_items
        assert torch.equal(recon, recon.sort().values) and len(set(recon.tolist())) == expected


def test_fused_pool_gradient_under_autocast_matches_full_precision():
    """GPU workers train under bf16 autocast: the pool's logits are then bf16 while its inputs are not."""
    g = torch.Generator().manual_seed(6)
    states = torch.randn(16, 8, generator=g, requires_grad=True)
    table = torch.randn(10, 8, generator=g, requires_grad=True)
    targets, pool, log_q = torch.randint(1, 10, (16,), generator=g), torch.arange(1, 10), torch.zeros(10)
    want = torch.autograd.grad(sampled_softmax_loss(states, targets, table, pool, log_q), (states, table))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sampled_softmax_loss(states, targets, table, pool, log_q)
    got = torch.autograd.grad(loss, (states, table))
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and torch.allclose(a, b, atol=0.05)


def test_reconstruction_sample_is_uniform_without_replacement():
    torch.manual_seed(0)
    items = torch.arange(1, 41) * 3
    counts = torch.zeros(121)
    for _ in range(2000):
        picked = reconstruction_sample(items, 10)
        assert len(set(picked.tolist())) == 10 and torch.equal(picked, picked.sort().values)
        counts[picked] += 1
    share = counts[items] / 2000  # each item is drawn with probability 10 / 40
    assert float(share.min()) > 0.2 and float(share.max()) < 0.3 and float(counts.sum()) == 20000
    assert torch.equal(reconstruction_sample(items, 0), items) and torch.equal(reconstruction_sample(items, 40), items)
