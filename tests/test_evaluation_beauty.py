"""The evaluation protocols on the real Amazon Beauty split (skipped when ../shared is absent)."""
from __future__ import annotations

import numpy as np
import pytest

from unisem.config.schema import EvaluationConfig
from unisem.data.dataset import sequences_from_lists
from unisem.evaluate.protocols import protocol_negatives
from unisem.evaluate.slices import HEAD, TAIL, item_popularity, popularity_bands

pytestmark = pytest.mark.beauty


@pytest.fixture(scope="module")
def beauty(beauty_dir):
    sequences = {}
    for line in (beauty_dir / "sequences.txt").read_text().splitlines():
        parts = line.split()
        sequences[parts[0]] = parts[1:]
    return sequences_from_lists(sequences, [str(i) for i in range(1, 12102)], max_seq_len=50)


def test_sampled_99_negatives_on_beauty_avoid_every_users_items(beauty):
    neg = protocol_negatives(beauty, 99, seed=EvaluationConfig().seed)
    assert neg.shape == (22363, 99) and neg.min() >= 1 and neg.max() <= 12101
    width = beauty.num_items + 1
    users = np.arange(beauty.num_users)
    touched = np.concatenate(
        [np.repeat(users, [len(h) for h in beauty.histories]) * width + np.concatenate(beauty.histories),
         users * width + beauty.valid_items, users * width + beauty.test_items]
    )
    assert not np.isin(users[:, None] * width + neg, touched).any()
    assert (np.diff(np.sort(neg, axis=1), axis=1) > 0).all(), "no repeated negative within a user"


def test_popularity_bands_on_beauty_hold_the_configured_shares(beauty):
    cfg = EvaluationConfig()
    counts = item_popularity(beauty)
    bands = popularity_bands(counts, cfg.head_share, cfg.tail_share)
    total = counts.sum()
    head, tail = counts[bands == HEAD], counts[bands == TAIL]
    assert cfg.head_share <= head.sum() / total < cfg.head_share + head.max() / total
    assert tail.sum() / total <= cfg.tail_share
    # Head items are the popular ones: every head item has at least the count of every tail item.
    assert head.min() >= tail.max()
