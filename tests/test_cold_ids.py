"""Cold items' ID vectors from the warm items sharing their semantic ID: the maths on hand-made codes, and
the model using it in its evaluation table and for items that arrived after training."""
from __future__ import annotations

import torch

from synthetic_sequences import chain_dataset
from unisem.config import UnisemConfig, replace_in
from unisem.model import build_network
from unisem.model.cold_ids import prefix_keys, shared_prefix_means


def test_prefix_keys_number_the_first_levels():
    codes = torch.tensor([[1, 2, 3], [1, 2, 0]])
    assert prefix_keys(codes, 2, 4).tolist() == [6, 6]
    assert prefix_keys(codes, 3, 4).tolist() == [27, 24]


def test_longest_shared_prefix_wins_and_no_shared_code_is_not_found():
    warm = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 0], [5, 5, 5]])
    vectors = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [9.0, 9.0]])
    query = torch.tensor([
        [0, 1, 2],  # full match: row 0 only
        [0, 1, 7],  # two levels: rows 0 and 1, mean (2, 0)
        [0, 3, 3],  # one level: rows 0, 1, 2, mean (4/3, 4/3)
        [6, 1, 2],  # nothing shares the first code
    ])
    means, found = shared_prefix_means(warm, vectors, query, codebook_size=8)
    assert found.tolist() == [True, True, True, False]
    assert torch.allclose(means[:3], torch.tensor([[1.0, 0.0], [2.0, 0.0], [4 / 3, 4 / 3]]))
    assert means[3].tolist() == [0.0, 0.0]


def net_cfg(cold_id: str = "neighbours"):
    return replace_in(UnisemConfig(), model={"cold_id": cold_id, "id_dim": 8},
                      quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2})


def _net(cold_id: str, cold_items):
    data, text = chain_dataset(users=40)
    cfg = net_cfg(cold_id)
    torch.manual_seed(0)
    net = build_network(cfg, data.num_items, text, cold_items)
    net.train()
    net.items.refresh_codes()  # initialise the codebooks as training does
    return net.eval(), text


def test_the_evaluation_table_gives_cold_items_their_neighbours_mean_id():
    cold = torch.tensor([3, 7])
    net, _ = _net("neighbours", cold.numpy())
    table = net.item_table()
    width = net.items.ids.weight.shape[1]
    codes, ids = table.codes[1:], net.items.ids.weight.detach()[1 : net.num_items + 1]
    warm = torch.ones(net.num_items, dtype=torch.bool)
    warm[cold - 1] = False
    means, found = shared_prefix_means(codes[warm], ids[warm], codes[cold - 1], 4)
    unknown = net.items.ids.weight.detach()[net.items.unknown_id]
    assert found.any()  # else this test could not tell borrowing from the unknown vector
    for row, item in enumerate(cold.tolist()):
        want = means[row] if found[row] else unknown
        assert torch.allclose(table.vectors[item, -width:], want)
    # warm items keep their own ID rows
    assert torch.allclose(table.vectors[1, -width:], net.items.ids.weight.detach()[1])
    plain, _ = _net("unknown", cold.numpy())
    assert torch.allclose(plain.item_table().vectors[3, -width:], plain.items.ids.weight.detach()[plain.items.unknown_id])


def test_items_added_after_training_borrow_ids_the_same_way():
    net, text = _net("neighbours", [])
    width = net.items.ids.weight.shape[1]
    vectors, codes = net.items.text_only_vectors(torch.as_tensor(text[1:3]))
    # an item with the text of items 1 and 2: the full prefix matches at least that item itself
    table = net.item_table()
    catalog_codes, ids = table.codes[1:], net.items.ids.weight.detach()[1 : net.num_items + 1]
    means, found = shared_prefix_means(catalog_codes, ids, codes, 4)
    assert found.all()
    assert torch.allclose(vectors[:, -width:], means)


def test_a_serving_model_borrows_from_the_table_it_holds_as_from_a_fresh_encoding():
    from unisem.model.recommender import Recommender

    net, text = _net("neighbours", [3])
    rec = Recommender(net, net_cfg(), tuple(f"i{i}" for i in range(1, net.num_items + 1)), ("",) * net.num_items)
    held, held_codes = rec.text_only_vectors(text[1:4])
    fresh, fresh_codes = net.items.text_only_vectors(torch.as_tensor(text[1:4]))
    assert torch.equal(held_codes, fresh_codes) and torch.allclose(held, fresh)
    # items appended to the served catalog do not lend their IDs to the next new items
    rec.extend(["new1", "new2", "new3"], held, held_codes)
    again, _ = rec.text_only_vectors(text[1:4])
    assert torch.allclose(again, fresh)
