"""Chunked full ranking and top-K equal the unchunked ones exactly; trimmed inference equals the padded
forward; evaluation through user states gives the same ranks as through a score matrix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic_sequences import chain_dataset
from unisem.config import UnisemConfig, replace_in
from unisem.data.dataset import pad_left
from unisem.evaluate.protocols import compute_ranks, full_ranks
from unisem.model import Recommender, build_network
from unisem.model.retrieval import StateScorer, chunked_full_ranks, chunked_top_k

pytestmark = pytest.mark.usefixtures("single_thread")


def integer_vectors(users=9, items=300, dim=5, seed=0, spread=40):
    """Small integers: every dot product is exact in float32 whatever the summation order, so a chunked
    matmul and a full one give bit-identical scores (and ties, which the ranks must treat alike)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randint(-spread, spread + 1, (items + 1, dim), generator=g).float()
    table[0] = 0
    states = torch.randint(-spread, spread + 1, (users, dim), generator=g).float()
    return states, table


@pytest.mark.parametrize("chunk", [1, 7, 64, 301, 1000])
def test_chunked_top_k_equals_topk_over_the_full_matrix(chunk):
    states, table = integer_vectors(spread=1000)  # a wide range: no ties among the top scores
    seen = torch.tensor([[0, 0, 5], [1, 2, 3]] + [[0, 0, 0]] * 7)
    full = states @ table.T
    full[:, 0] = float("-inf")
    full.scatter_(1, seen, float("-inf"))
    expected = full.topk(10, dim=1)
    assert len(torch.unique(expected.values)) == expected.values.numel()  # the premise: no ties
    idx, val = chunked_top_k(states, table, 10, seen, chunk)
    assert torch.equal(val, expected.values) and torch.equal(idx, expected.indices)
    assert not torch.isin(idx[1], torch.tensor([0, 1, 2, 3])).any()


@pytest.mark.parametrize("chunk", [1, 13, 64, 301, 4096])
def test_chunked_ranks_equal_full_ranks_ties_and_nan_included(chunk):
    states, table = integer_vectors(spread=3)  # a narrow range: many ties with the target
    targets = torch.tensor([1, 5, 17, 300, 2, 2, 150, 99, 64])
    seen = torch.tensor([[0, 0, 3], [5, 6, 7]] + [[0, 4, 8]] * 7)
    states[3] = float("nan")  # a broken user: its target NaN, worst rank
    full = states @ table.T
    expected = full_ranks(full, targets, seen)
    got = chunked_full_ranks(states, table, targets, seen, chunk)
    assert got.tolist() == expected.tolist()
    assert int(got[3]) == 300 - 1 - 2  # every item above it but itself and its two seen items


def tiny_config():
    return replace_in(
        UnisemConfig(),
        model={"dropout": 0.0, "id_dim": 8},
        quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2},
        data={"max_seq_len": 10},
    )


def test_trimmed_inference_equals_the_padded_forward_last_position():
    data, text = chain_dataset(items=40, users=50)
    cfg = tiny_config()
    net = build_network(cfg, data.num_items, text, data.cold_items)
    net.train().items.refresh_codes()
    rec = Recommender(net, cfg, data.item_ids, data.item_titles)
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 41, size=n) for n in (1, 3, 10, 14, 2, 7, 1, 9)]  # 14 > max_seq_len
    padded = torch.from_numpy(pad_left(histories, 16))
    with torch.no_grad():
        reference = net.states(padded[:, -10:], rec.table)[:, -1]
    got = rec.user_states(padded)
    assert torch.allclose(got, reference, atol=1e-5)
    assert torch.allclose(rec.score(padded)[:, 1:], (reference @ rec.table.T)[:, 1:], atol=1e-4)


def test_evaluation_through_states_gives_the_ranks_of_the_score_matrix():
    data, _ = chain_dataset(items=60, users=200)
    g = torch.Generator().manual_seed(1)
    table = torch.randint(-3, 4, (data.num_items + 1, 4), generator=g).float()
    table[0] = 0

    def states(histories):  # a deterministic integer "model": sum of the last two items' vectors
        return table[histories[:, -1]] + table[histories[:, -2]]

    def scores(histories):
        return states(histories) @ table.T

    cfg = UnisemConfig().evaluation
    for split in ("valid", "test"):
        direct = compute_ranks(scores, data, cfg, split, max_len=10, batch_size=37)
        chunked = compute_ranks(StateScorer(states, table, 16), data, cfg, split, max_len=10, batch_size=37)
        assert set(direct) == set(chunked) == {"full", "sampled-99"}
        for protocol in direct:
            assert np.array_equal(direct[protocol], chunked[protocol]), (split, protocol)


def test_an_item_added_by_text_gets_the_vector_of_a_cold_item_and_top_k_sees_it():
    data, text = chain_dataset(items=40, users=50)
    cfg = tiny_config()
    cold = np.asarray([7, 20])
    net = build_network(cfg, data.num_items, text, cold)
    net.train().items.refresh_codes()
    rec = Recommender(net, cfg, data.item_ids, data.item_titles)
    # The same text as cold item 7: the same vector and semantic ID, built by the one cold-item rule.
    vectors, codes = rec.text_only_vectors(text[[7, 20]])
    assert torch.allclose(vectors, rec.table[[7, 20]], atol=1e-5)
    assert (codes.numpy() == rec.semantic_ids[[7, 20]]).all()
    rec.extend(["new-a", "new-b"], vectors, codes, item_titles=["A", "B"])
    assert rec.num_items == 42 and rec.table.shape[0] == 43 and rec.index_of("new-b") == 42
    assert rec.item_titles[-2:] == ("A", "B") and len(rec.semantic_ids) == 43
    states = rec.user_states(torch.tensor([[0, 3, 4]]))
    idx, val = rec.top_k(states, 43, seen=torch.tensor([[41, 3, 4]]))
    kept = idx[0][val[0] > float("-inf")].tolist()
    assert 42 in kept and not {0, 3, 4, 41} & set(kept) and len(kept) == 39  # 42 items minus the 3 seen
    with pytest.raises(ValueError, match="'new-a' is already in the catalog"):
        rec.extend(["new-a"], vectors[:1], codes[:1])
    with pytest.raises(ValueError, match="need vectors of shape"):
        rec.extend(["new-c"], vectors, codes)
