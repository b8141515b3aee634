"""Item text embeddings aligned with an item vocabulary (the items table of a features folder).

Output (``RunLayout.embeddings``): ``item_embeddings.safetensors`` with one tensor ``embeddings``, float32
[N + 1, dim], where row ``i`` is item index ``i`` and row 0 (padding) is zeros, so the model can index it
with item indices directly; and ``meta.json`` (model identity, counts, cache use, a hash of the texts).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from unisem.atomic import atomic_dir
from unisem.config.schema import TextConfig
from unisem.home import embedding_cache_dir
from unisem.text.cache import EmbeddingCache, embed_texts, text_key
from unisem.text.encoder import TextEncoder, load_encoder

EMBEDDINGS_FILE = "item_embeddings.safetensors"
META_FILE = "meta.json"
TENSOR = "embeddings"


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(text_key(t))
    return h.hexdigest()


def embed_item_texts(
    texts: Sequence[str],
    out_dir: str | Path,
    text: TextConfig,
    cache_dir: Path | None = None,
    encoder: TextEncoder | None = None,
    features_dir: str | Path | None = None,
) -> Path:
    """Encode the texts of items 1..N (``texts[i - 1]`` is item index i) into ``out_dir`` (atomically),
    reusing the cache.

    The caller reads the texts (``unisem.data.dataset.read_item_texts``), so this layer knows texts, not the
    features folder; ``features_dir`` is only recorded in meta.json, to say where they came from.
    ``cache_dir`` defaults to ``<UNISEM_HOME>/cache/embeddings``; ``encoder`` defaults to ``text.encoder``
    (passing one is for tests and for reusing a loaded model).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no item texts to embed")
    encoder = encoder or load_encoder(text)
    cache = EmbeddingCache(cache_dir or embedding_cache_dir(), encoder.identity, encoder.dim)
    vectors, stats = embed_texts(texts, encoder, cache)
    table = np.zeros((len(texts) + 1, encoder.dim), dtype=np.float32)
    table[1:] = vectors
    meta = {
        "model": encoder.identity,
        "dim": encoder.dim,
        "items": len(texts),
        "texts_sha256": texts_digest(texts),
        "features_dir": str(Path(features_dir).resolve()) if features_dir is not None else None,
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
