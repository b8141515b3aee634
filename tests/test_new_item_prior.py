"""The text prior for items without interactions: the extended inner product equals its formula, the chunked
normaliser equals logsumexp, and a recommender ranks with it the same through every path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthetic_sequences import chain_dataset
from unisem.config import UnisemConfig, replace_in
from unisem.evaluate.protocols import compute_ranks
from unisem.model import Recommender, build_network
from unisem.model.new_item_prior import PriorSettings, prior_states, prior_table, unit_text, warm_log_normaliser

pytestmark = pytest.mark.usefixtures("single_thread")


def test_extended_rows_give_the_warm_log_probability_and_the_text_score_by_hand():
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])  # row 0 padding; item 3 is new
    text = unit_text(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0]]))
    new = torch.tensor([False, False, False, True])
    settings = PriorSettings(bias=-1.0, temperature=0.5)
    state = torch.tensor([[1.0, 1.0]])
    # warm logits 1 and 2: logsumexp = log(e + e^2)
    lse = warm_log_normaliser(state, table, torch.tensor([False, True, True, False]))
    assert lse.item() == pytest.approx(math.log(math.e + math.e**2), rel=1e-6)
    last_text = text[[1]]  # the user's last item is item 1 (text [1, 0])
    scores = prior_states(state, lse, last_text, settings) @ prior_table(table, text, new, settings).T
    # warm: logit - lse; new item 3: cos([0.6, 0.8], [1, 0]) = 0.6 -> -1 - (1 - 0.6) / 0.5 = -1.8
    expected = [0.0, 1 - lse.item(), 2 - lse.item(), -1.8]
    assert scores[0].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_the_chunked_normaliser_is_logsumexp_over_the_warm_rows(chunk):
    g = torch.Generator().manual_seed(0)
    states, table = torch.randn(5, 4, generator=g) * 3, torch.randn(20, 4, generator=g)
    warm = torch.rand(20, generator=g) > 0.3
    warm[0] = False
    expected = torch.logsumexp((states @ table.T)[:, warm], dim=1)
    assert torch.allclose(warm_log_normaliser(states, table, warm, chunk), expected, atol=1e-5)
    assert warm_log_normaliser(states, table, torch.zeros(20, dtype=torch.bool)).tolist() == [0.0] * 5


def test_a_temperature_must_be_positive():
    with pytest.raises(ValueError, match="new_item_temperature"):
        PriorSettings(bias=0.0, temperature=0.0)


def prior_config(**model):
    return replace_in(
        UnisemConfig(),
        model={"dropout": 0.0, "id_dim": 8, **model},
        quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2},
        data={"max_seq_len": 10},
    )


def trained_like(cold):
    data, text = chain_dataset(items=40, users=60)
    torch.manual_seed(0)
    net = build_network(prior_config(), data.num_items, text, np.asarray(cold, dtype=np.int64))
    net.train().items.refresh_codes()
    return data, text, net


def test_the_prior_changes_nothing_without_new_items():
    data, _, net = trained_like([])
    plain = Recommender(net, prior_config(), data.item_ids, data.item_titles)
    with_prior = Recommender(net, prior_config(new_item_prior="text"), data.item_ids, data.item_titles)
    histories = torch.tensor([[0, 3, 4], [5, 6, 7]])
    assert not with_prior.prior_active
    assert torch.equal(with_prior.score(histories), plain.score(histories))


def test_held_out_items_score_by_the_prior_and_every_ranking_path_agrees():
    cold = [7, 20, 33]
    data, text, net = trained_like(cold)
    cfg = prior_config(new_item_prior="text", new_item_bias=0.5, new_item_temperature=0.1)
    rec = Recommender(net, cfg, data.item_ids, data.item_titles)
    plain = Recommender(net, prior_config(), data.item_ids, data.item_titles)
    histories = torch.tensor([[0, 3, 4], [0, 0, 12]])
    scores = rec.score(histories)
    model = plain.score(histories)
    warm = torch.ones(41, dtype=torch.bool)
    warm[[0, *cold]] = False
    expected_warm = model[:, warm] - torch.logsumexp(model[:, warm], dim=1, keepdim=True)
    assert torch.allclose(scores[:, warm], expected_warm, atol=1e-4)
    unit = unit_text(torch.as_tensor(text))
    cos = unit[[4, 12]] @ unit[cold].T
    assert torch.allclose(scores[:, cold], 0.5 - (1 - cos) / 0.1, atol=1e-4)
    # evaluation through the extended states and table ranks exactly like the score matrix
    direct = compute_ranks(rec.score, data, cfg.evaluation, "test", max_len=10)
    chunked = compute_ranks(rec.scorer(chunk_items=16), data, cfg.evaluation, "test", max_len=10)
    for protocol in direct:
        assert np.array_equal(direct[protocol], chunked[protocol]), protocol
    # and top-K is the top of the same scores
    idx, _ = rec.recommend(histories, 5)
    masked = scores.clone()
    masked.scatter_(1, histories, float("-inf"))
    assert torch.equal(idx, masked.topk(5, dim=1).indices)


def test_items_added_after_training_are_new_and_need_their_text():
    data, text, net = trained_like([])
    rec = Recommender(net, prior_config(new_item_prior="text"), data.item_ids, data.item_titles)
    vectors, codes = rec.text_only_vectors(text[[5]])
    with pytest.raises(ValueError, match="pass their text embeddings"):
        rec.extend(["new-a"], vectors, codes)
    rec.extend(["new-a"], vectors, codes, text_embeddings=text[[5]])
    assert rec.prior_active and rec.num_items == 41
    # the same text as the user's last item: the prior's bias exactly
    score = rec.score(torch.tensor([[0, 3, 5]]))[0, 41]
    assert score.item() == pytest.approx(UnisemConfig().model.new_item_bias, abs=1e-4)


def test_a_model_without_text_refuses_the_prior():
    data, text = chain_dataset(items=40, users=60)
    cfg = prior_config(variant="id-only", new_item_prior="text")
    net = build_network(cfg, data.num_items, None, np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="model.new_item_prior=text needs the items' text"):
        Recommender(net, cfg, data.item_ids, data.item_titles)


def test_a_serving_model_recommends_a_new_item_whose_text_matches_the_last_one():
    from unisem.model.inference_by_id import ServingModel

    data, text, net = trained_like([])
    cfg = prior_config(new_item_prior="text", new_item_bias=5.0, new_item_temperature=0.02)
    serving = ServingModel(Recommender(net, cfg, data.item_ids, data.item_titles))
    last = data.item_ids[4]  # item index 5
    assert serving.add_items(["brand-new"], text[[5]]) == 1
    top = serving.recommend([[data.item_ids[2], last]], k=3).item_ids[0]
    assert top[0] == "brand-new"
    # without the prior the same new item is just one more vector, not pulled up by its text
    plain = ServingModel(Recommender(net, prior_config(), data.item_ids, data.item_titles))
    plain.add_items(["brand-new"], text[[5]])
    assert plain.recommend([[data.item_ids[2], last]], k=3).item_ids[0][0] != "brand-new"
