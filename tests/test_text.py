"""Text embeddings: cache hits and misses counted with a fake encoder, crash safety, and the real MiniLM."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from unisem.cli import main
from unisem.config.schema import TextConfig
from unisem.data.dataset import FeaturesError, read_item_texts, sequences_from_lists, write_features
from unisem.text import cache as cache_mod
from unisem.text.cache import EmbeddingCache, embed_texts, text_key
from unisem.text.embeddings import embed_item_texts, load_embedding_meta, load_item_embeddings


class CountingEncoder:
    """A deterministic fake: each text maps to a vector derived from its hash; every encoded text is counted."""

    def __init__(self, identity: str = "fake@1", dim: int = 8, fail_after: int | None = None):
        self.identity, self.dim = identity, dim
        self.encoded: list[str] = []
        self.fail_after = fail_after

    def encode(self, texts):
        if self.fail_after is not None and len(self.encoded) + len(texts) > self.fail_after:
            raise RuntimeError("encoder crashed")
        self.encoded.extend(texts)
        return np.stack([self.vector(t) for t in texts]).astype(np.float32)

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)


TEXTS = [f"item {i};{i}.99;Brand {i % 3};Makeup;Lips" for i in range(20)]


def test_second_run_is_all_hits_and_one_changed_text_is_all_that_is_encoded(tmp_path):
    enc = CountingEncoder()
    first, s1 = embed_texts(TEXTS, enc, EmbeddingCache(tmp_path, enc.identity, enc.dim))
    assert (s1.cache_hits, s1.encoded) == (0, 20) and len(enc.encoded) == 20
    # A fresh cache object (a new process) reads the shards from disk.
    again, s2 = embed_texts(TEXTS, enc, EmbeddingCache(tmp_path, enc.identity, enc.dim))
    assert (s2.cache_hits, s2.encoded) == (20, 0) and len(enc.encoded) == 20
    np.testing.assert_array_equal(first, again)
    changed = list(TEXTS)
    changed[7] = "a brand new text"
    vectors, s3 = embed_texts(changed, enc, EmbeddingCache(tmp_path, enc.identity, enc.dim))
    assert (s3.cache_hits, s3.encoded) == (19, 1) and enc.encoded[-1] == "a brand new text"
    np.testing.assert_array_equal(vectors[7], enc.vector("a brand new text"))
    np.testing.assert_array_equal(np.delete(vectors, 7, 0), np.delete(first, 7, 0))


def test_duplicate_texts_are_encoded_once_and_rows_stay_aligned(tmp_path):
    enc = CountingEncoder()
    vectors, stats = embed_texts(["b", "a", "b", "c", "a"], enc, EmbeddingCache(tmp_path, enc.identity, enc.dim))
    assert sorted(enc.encoded) == ["a", "b", "c"] and stats == (5, 3, 0, 3)
    for row, text in enumerate(["b", "a", "b", "c", "a"]):
        np.testing.assert_array_equal(vectors[row], enc.vector(text))


def test_another_model_does_not_see_the_cache(tmp_path):
    a, b = CountingEncoder("model-a"), CountingEncoder("model-b")
    embed_texts(TEXTS, a, EmbeddingCache(tmp_path, a.identity, a.dim))
    _, stats = embed_texts(TEXTS, b, EmbeddingCache(tmp_path, b.identity, b.dim))
    assert stats.encoded == 20
    assert len(list(tmp_path.iterdir())) == 2


def test_crash_mid_encoding_keeps_finished_shards_and_no_partial_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "WRITE_EVERY", 8)
    enc = CountingEncoder(fail_after=16)  # dies on the third batch of 8
    with pytest.raises(RuntimeError, match="encoder crashed"):
        embed_texts(TEXTS, enc, EmbeddingCache(tmp_path, enc.identity, enc.dim))
    folder = next(tmp_path.iterdir())
    assert len(list(folder.glob("shard-*.safetensors"))) == 2
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    enc2 = CountingEncoder()
    _, stats = embed_texts(TEXTS, enc2, EmbeddingCache(tmp_path, enc2.identity, enc2.dim))
    assert (stats.cache_hits, stats.encoded) == (16, 4)


def test_shards_are_merged_when_they_pile_up(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SHARDS", 3)
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path, enc.identity, enc.dim)
    for i in range(5):
        cache.put([text_key(f"t{i}")], enc.encode([f"t{i}"]))
    assert len(list(cache.folder.glob("shard-*.safetensors"))) <= 3
    found, vectors = EmbeddingCache(tmp_path, enc.identity, enc.dim).get([text_key(f"t{i}") for i in range(5)])
    assert found.all()
    np.testing.assert_array_equal(vectors[4], enc.vector("t4"))


def test_cache_rejects_vectors_of_the_wrong_width(tmp_path):
    cache = EmbeddingCache(tmp_path, "m", 4)
    with pytest.raises(ValueError, match=r"expected vectors of shape \[1, 4\]"):
        cache.put([text_key("x")], np.zeros((1, 5)))


@pytest.fixture
def features(tmp_path):
    data = sequences_from_lists(
        {"u1": ["a", "b", "c"], "u2": ["c", "b", "a", "d"]}, ["a", "b", "c", "d"], ["text a", "text b", "text c", "text a"]
    )
    return write_features(data, tmp_path / "features")


def test_embedded_items_align_rows_with_item_indices(features, tmp_path):
    enc = CountingEncoder()
    texts = read_item_texts(features)
    assert texts.item_ids == ["a", "b", "c", "d"]
    out = embed_item_texts(texts.texts, tmp_path / "emb", TextConfig(), cache_dir=tmp_path / "cache", encoder=enc,
                           features_dir=features)
    table = load_item_embeddings(out)
    assert table.shape == (5, 8) and table.dtype == np.float32
    assert not table[0].any()
    for index, text in enumerate(["text a", "text b", "text c", "text a"], start=1):
        np.testing.assert_array_equal(table[index], enc.vector(text))
    meta = load_embedding_meta(out)
    assert meta["model"] == "fake@1" and meta["items"] == 4 and meta["stats"]["encoded"] == 3
    assert meta["features_dir"] == str(features.resolve())
    embed_item_texts(texts.texts, tmp_path / "emb", TextConfig(), cache_dir=tmp_path / "cache", encoder=enc)
    assert load_embedding_meta(out)["stats"]["cache_hits"] == 3 and len(enc.encoded) == 3
    np.testing.assert_array_equal(load_item_embeddings(out), table)


def test_item_texts_and_embedding_errors(tmp_path):
    with pytest.raises(FeaturesError, match="missing table items"):
        read_item_texts(tmp_path)
    with pytest.raises(ValueError, match="no item texts"):
        embed_item_texts([], tmp_path / "emb", TextConfig(), encoder=CountingEncoder())
    with pytest.raises(FileNotFoundError, match="no item embeddings here"):
        load_item_embeddings(tmp_path)
    assert not (tmp_path / "emb").exists()


@pytest.mark.slow
def test_real_minilm_and_the_embed_command(features, tmp_path, unisem_home, capsys):
    """One real encoder run: the packaged all-MiniLM-L6-v2, through ``unisem embed``, then from the cache."""
    args = ["embed", "--features", str(features), "--out", str(tmp_path / "emb"), "--set", "text.show_progress=false"]
    assert main(args) == 0
    assert "3 encoded, 0 from the cache" in capsys.readouterr().out
    table = load_item_embeddings(tmp_path / "emb")
    assert table.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(table[1:], axis=1), 1.0, atol=1e-4)  # the model normalises
    np.testing.assert_array_equal(table[1], table[4])  # same text, same vector
    meta = json.loads((tmp_path / "emb" / "meta.json").read_text())
    assert meta["model"].startswith("all-MiniLM-L6-v2@") and meta["dim"] == 384
    # All texts cached: the model is not even loaded (its identity and width come from the folder).
    from unisem.text.encoder import _load_model

    _load_model.cache_clear()
    assert main(args) == 0
    assert "0 encoded, 3 from the cache" in capsys.readouterr().out
    assert _load_model.cache_info().currsize == 0
    assert (unisem_home / "cache" / "embeddings").is_dir()


@pytest.mark.slow
def test_real_minilm_puts_related_texts_closer():
    from unisem.text.encoder import load_encoder

    enc = load_encoder(TextConfig(show_progress=False, batch_size=2))
    declared = enc.dim  # read from the model folder, before loading
    v = enc.encode(["red matte lipstick", "crimson lip color", "anti-dandruff shampoo for men"])
    assert declared == enc.model.get_embedding_dimension() == 384
    assert v.shape == (3, enc.dim) and v.dtype == np.float32
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.1
