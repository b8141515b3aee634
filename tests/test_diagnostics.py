"""Semantic-ID diagnostics and embedding-parameter counts on hand-made codes."""
from __future__ import annotations

import numpy as np
import pytest

from unisem.config import replace_in
from unisem.config.schema import UnisemConfig
from unisem.evaluate.diagnostics import (
    codebook_usage,
    collision_groups,
    collision_rate,
    embedding_param_count,
    embedding_params,
    embedding_params_for,
    item_codes,
    semantic_id_table,
)

# Five items, three levels, K = 4. Items 1 and 2 share (0, 1, 2); items 3, 4, 5 are unique.
CODES = np.array([[0, 1, 2], [0, 1, 2], [3, 1, 0], [0, 1, 3], [2, 1, 3]])


def test_codebook_usage_per_level():
    # level 1 uses {0, 2, 3} of 4, level 2 only {1}, level 3 {0, 2, 3}.
    assert codebook_usage(CODES, 4) == [0.75, 0.25, 0.75]
    with pytest.raises(ValueError, match="outside a codebook of 3"):
        codebook_usage(CODES, 3)


def test_collision_rate_counts_every_item_of_a_shared_tuple():
    assert collision_groups(CODES).tolist() == [2, 2, 1, 1, 1]
    assert collision_rate(CODES) == pytest.approx(2 / 5)
    assert collision_rate(np.array([[1, 1], [1, 1], [1, 1]])) == 1.0
    assert collision_rate(np.arange(6).reshape(3, 2)) == 0.0
    # Tuples differing only at the last level are different IDs.
    assert collision_rate(np.array([[0, 0, 1], [0, 0, 2]])) == 0.0


def test_item_codes_drop_the_padding_row():
    table = np.vstack([np.full((1, 3), -1, dtype=np.int64), CODES])  # the model marks padding with -1
    assert np.array_equal(item_codes(table), CODES)


def test_semantic_id_table():
    table = semantic_id_table(CODES, ["a", "b", "c", "d", "e"])
    assert table.column_names == ["item_index", "item_id", "semantic_id", "collisions"]
    assert table["item_index"].to_pylist() == [1, 2, 3, 4, 5]
    assert table["semantic_id"].to_pylist()[2] == [3, 1, 0]
    assert table["collisions"].to_pylist() == [1, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="4 item ids for 5 code rows"):
        semantic_id_table(CODES, ["a", "b", "c", "d"])


def test_embedding_params_on_beauty_match_the_design_claim():
    # DESIGN.md 1.7: on Beauty (N = 12,101), d_id 8 + 3 codebooks of 256 x 64 is 81% fewer than N x 64.
    n = 12101
    assert embedding_param_count("unified", n, id_dim=8, levels=3, codebook_size=256, code_dim=64) == (
        12101 * 8 + 3 * 256 * 64
    ) == 145960
    assert embedding_param_count("id-only", n) == 12101 * 64 == 774464
    assert embedding_param_count("semantic-only", n) == 49152
    unified = embedding_params("unified", n, id_dim=8)
    assert unified.params == 145960 and unified.id_only_params == 774464
    assert round(unified.reduction * 100) == 81
    assert embedding_params("id-only", n).reduction == 0.0


def test_embedding_params_from_config():
    # Without explicit dimensions the count is the default configuration's model (model.id_dim = 64).
    assert embedding_param_count("unified", 100) == 100 * UnisemConfig().model.id_dim + 3 * 256 * 64
    cfg = replace_in(UnisemConfig(), model={"variant": "semantic-only"}, quantizer={"levels": 2, "codebook_size": 16})
    assert embedding_params_for(cfg, 100).params == 2 * 16 * 64
    with pytest.raises(ValueError, match="unknown model variant"):
        embedding_param_count("both", 10)  # type: ignore[arg-type]


def test_collision_groups_packed_keys_agree_with_tuple_comparison():
    from unisem.evaluate.diagnostics import collision_groups

    rng = np.random.default_rng(0)
    small = rng.integers(0, 4, size=(500, 3))  # packed into int64 keys
    wide = np.concatenate([small, rng.integers(0, 2**40, size=(500, 1)) * 0 + 2**40], axis=1)  # too wide to pack
    _, inverse, counts = np.unique(small, axis=0, return_inverse=True, return_counts=True)
    assert np.array_equal(collision_groups(small), counts[inverse.reshape(-1)])
    assert np.array_equal(collision_groups(wide), collision_groups(small))
