"""Item text embeddings aligned with the item vocabulary of a features folder.

Output (``RunLayout.embeddings``): ``item_embeddings.safetensors`` with one tensor ``embeddings``, float32
[N + 1, dim], where row ``i`` is item index ``i`` and row 0 (padding) is zeros, so the model can index it
with item indices directly; and ``meta.json`` (model identity, counts, cache use, a hash of the texts).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from unisem.atomic import atomic_dir
from unisem.config.schema import TextConfig
from unisem.data.dataset import ITEMS_TABLE, FeaturesError
from unisem.home import embedding_cache_dir
from unisem.text.cache import EmbeddingCache, embed_texts, text_key
from unisem.text.encoder import TextEncoder, load_encoder

EMBEDDINGS_FILE = "item_embeddings.safetensors"
META_FILE = "meta.json"
TENSOR = "embeddings"


class ItemTexts(NamedTuple):
    item_ids: list[str]  # item_ids[i - 1] is item index i
    texts: list[str]


def read_item_texts(features_dir: str | Path) -> ItemTexts:
    """The ``items`` table of a features folder (a Parquet file or a Spark part-file folder), by item_index."""
    folder = Path(features_dir)
    path = next((p for p in (folder / ITEMS_TABLE, folder / f"{ITEMS_TABLE}.parquet") if p.exists()), None)
    if path is None:
        raise FeaturesError(f"{folder}: missing table {ITEMS_TABLE} (expected {ITEMS_TABLE}/ or {ITEMS_TABLE}.parquet)")
    table = pq.read_table(path)
    missing = [c for c in ("item_index", "item_id", "text") if c not in table.column_names]
    if missing:
        raise FeaturesError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    table = table.sort_by("item_index")
    index = table["item_index"].to_numpy()
    if not np.array_equal(index, np.arange(1, len(index) + 1)):
        raise FeaturesError(f"{path}: item_index must run 1..N without gaps")
    if len(index) == 0:
        raise FeaturesError(f"{path}: the items table is empty")
    return ItemTexts(table["item_id"].to_pylist(), [t or "" for t in table["text"].to_pylist()])


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(text_key(t))
    return h.hexdigest()


def embed_features(
    features_dir: str | Path,
    out_dir: str | Path,
    text: TextConfig,
    cache_dir: Path | None = None,
    encoder: TextEncoder | None = None,
) -> Path:
    """Encode every item text of ``features_dir`` into ``out_dir`` (atomically), reusing the cache.

    ``cache_dir`` defaults to ``<UNISEM_HOME>/cache/embeddings``; ``encoder`` defaults to ``text.encoder``
    (passing one is for tests and for reusing a loaded model).
    """
    items = read_item_texts(features_dir)
    encoder = encoder or load_encoder(text)
    cache = EmbeddingCache(cache_dir or embedding_cache_dir(), encoder.identity, encoder.dim)
    vectors, stats = embed_texts(items.texts, encoder, cache)
    table = np.zeros((len(items.texts) + 1, encoder.dim), dtype=np.float32)
    table[1:] = vectors
    meta = {
        "model": encoder.identity,
        "dim": encoder.dim,
        "items": len(items.texts),
        "texts_sha256": texts_digest(items.texts),
        "features_dir": str(Path(features_dir).resolve()),
        "stats": stats._asdict(),
    }
    with atomic_dir(out_dir) as tmp:
        save_file({TENSOR: table}, str(tmp / EMBEDDINGS_FILE), metadata={"model": encoder.identity})
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return Path(out_dir)


def load_item_embeddings(directory: str | Path) -> np.ndarray:
    """float32 [N + 1, dim]; row 0 is the padding row (zeros)."""
    path = Path(directory) / EMBEDDINGS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no item embeddings here (run `unisem embed` first)")
    tensors = load_file(str(path))
    if TENSOR not in tensors:
        raise ValueError(f"{path}: no tensor {TENSOR!r} (found: {', '.join(tensors) or 'none'})")
    table = tensors[TENSOR]
    if table.ndim != 2 or table.shape[0] < 2:
        raise ValueError(f"{path}: expected a [N + 1, dim] table, got shape {list(table.shape)}")
    return table.astype(np.float32, copy=False)


def load_embedding_meta(directory: str | Path) -> dict:
    return json.loads((Path(directory) / META_FILE).read_text())
