"""The approximate item index: finds the exact top-K on clustered data, skips excluded items, round-trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faiss", reason="faiss-cpu is pinned in requirements.txt")

from unisem.model.index import ItemIndex, build_index  # noqa: E402
from unisem.model.retrieval import chunked_top_k  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def clustered_table(items=2000, dim=16, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 3
    table = np.zeros((items + 1, dim), dtype=np.float32)
    table[1:] = centres[rng.integers(clusters, size=items)] + rng.normal(size=(items, dim))
    return torch.from_numpy(table)


class LastItemModel:
    """A recommender whose user state is the last item's vector."""

    max_len = 5

    def __init__(self, table):
        self.table = table

    def user_states(self, padded):
        return self.table[padded[:, -1]]


def test_probing_every_cell_is_exact_and_excluded_items_never_return(tmp_path):
    table = clustered_table()
    states = torch.from_numpy(np.random.default_rng(1).normal(size=(30, 16)).astype(np.float32))
    seen = torch.randint(1, 2001, (30, 5), generator=torch.Generator().manual_seed(0))
    index = build_index(table, nlist=16)
    exact, _ = chunked_top_k(states, table, 10, seen)
    got = index.search(states, 10, seen, nprobe=16)  # all cells probed: an exhaustive scan
    assert torch.equal(got, exact)
    assert not (got[:, :, None] == seen[:, None, :]).any()
    path = tmp_path / "items.faiss"
    index.save(path)
    again = ItemIndex.load(path)
    assert torch.equal(again.search(states, 10, seen, nprobe=16), got)


def test_few_probes_keep_most_of_the_exact_top_10():
    from unisem.model.index import index_recall

    table = clustered_table(items=5000)

    histories = [np.array([i]) for i in range(1, 5000, 25)]
    recall = index_recall(build_index(table, nlist=32), LastItemModel(table), histories, k=10, nprobe=4)
    assert 0.7 < recall <= 1.0


def test_serving_answers_from_the_index_like_exact_search_when_every_cell_is_probed():
    from synthetic_sequences import chain_dataset
    from unisem.config import UnisemConfig, replace_in
    from unisem.model import Recommender, build_network
    from unisem.model.inference_by_id import ServingModel

    data, text = chain_dataset(items=300, users=40)
    cfg = replace_in(UnisemConfig(), model={"dropout": 0.0, "id_dim": 8},
                     quantizer={"codebook_size": 4, "code_dim": 8, "encoder_hidden": [16], "levels": 2},
                     data={"max_seq_len": 10})
    net = build_network(cfg, data.num_items, text, data.cold_items)
    net.train().items.refresh_codes()
    serving = ServingModel(Recommender(net, cfg, data.item_ids, data.item_titles))
    histories = [[data.item_ids[i - 1] for i in h] for h in data.histories[:10]]
    exact = serving.recommend(histories, k=5)
    serving.use_index(build_index(serving.recommender.table, nlist=8), nprobe=8)
    approx = serving.recommend(histories, k=5)
    assert approx.item_ids == exact.item_ids
    assert np.allclose(approx.scores, exact.scores, atol=1e-5)
    serving.add_items(["new-item"], text[1:2])  # the index no longer covers the table: exact search again
    assert serving.item_index is None


def test_calibration_picks_the_fewest_probes_that_reach_the_target_and_saves_them(tmp_path):
    from unisem.model.index import calibrate, index_recall

    table = clustered_table(items=5000)

    histories = [np.array([i]) for i in range(1, 5000, 25)]
    index = build_index(table, nlist=64)
    reached = calibrate(index, LastItemModel(table), histories, target_recall=0.95)
    chosen = index.nprobe
    assert reached >= 0.95 and reached == index_recall(index, LastItemModel(table), histories)
    if chosen > 1:  # half the probes would not have been enough
        assert index_recall(index, LastItemModel(table), histories, nprobe=chosen // 2) < 0.95
    index.save(tmp_path / "items.faiss")
    assert ItemIndex.load(tmp_path / "items.faiss").nprobe == chosen


def test_long_and_short_vectors_rank_by_inner_product_not_by_distance():
    # Two items in the query's direction, one twice as long: inner product must put the long one first
    # (plain L2 nearest neighbour would pick the short one, which sits closer to a unit query).
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    index = build_index(table, nlist=1)
    got = index.search(torch.tensor([[1.0, 0.1]]), 3, nprobe=1)
    assert got.tolist() == [[2, 1, 3]]
