"""On-disk cache of text embeddings, keyed by the encoder's identity and the sha256 of each text.

Layout: ``<cache_dir>/<model-key>/shard-*.safetensors``, one shard per write, each holding ``keys``
(uint8 [n, 32], the sha256 digests) and ``embeddings`` (float32 [n, dim]); the shards *are* the index, so
there is no second file that could disagree with them. Shards are written to a temporary name and renamed
(``unisem.atomic``), so a crash loses at most the batch being written and never corrupts what is there;
readers ignore temporary files. When shards pile up they are merged into one (also atomically).
No pickle anywhere: safetensors only.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from unisem.atomic import atomic_file, write_text_atomic
from unisem.progress import say
from unisem.text.encoder import TextEncoder

SHARD_GLOB = "shard-*.safetensors"
MAX_SHARDS = 32
# Texts encoded between two shard writes: progress survives a crash in the middle of a long encoding.
WRITE_EVERY = 4096


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _folder_name(identity: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:60]
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


class EmbeddingCache:
    """Embeddings of one encoder; ``get`` answers from all shards, ``put`` adds one shard."""

    def __init__(self, root: str | Path, identity: str, dim: int):
        self.root = Path(root)
        self.identity = identity
        self.dim = dim
        self.folder = self.root / _folder_name(identity)
        self._index: dict[bytes, np.ndarray] | None = None

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob(SHARD_GLOB))

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._index is None:
            index: dict[bytes, np.ndarray] = {}
            for shard in self._shards():
                try:
                    tensors = load_file(str(shard))
                except FileNotFoundError:  # merged away by another process meanwhile
                    continue
                keys, vectors = tensors["keys"], tensors["embeddings"]
                if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(keys) != len(vectors):
                    raise ValueError(
                        f"{shard}: embedding cache shard has shape {vectors.shape}, expected [n, {self.dim}] "
                        "for this model; delete the folder to rebuild it"
                    )
                for key, vector in zip(keys, vectors):
                    index[key.tobytes()] = vector
            self._index = index
        return self._index

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(found mask [n], vectors [n, dim])``; rows not found are zeros."""
        index = self._load()
        found = np.zeros(len(keys), dtype=bool)
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        for row, key in enumerate(keys):
            vector = index.get(key)
            if vector is not None:
                found[row] = True
                out[row] = vector
        return found, out

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape [{len(keys)}, {self.dim}], got {list(vectors.shape)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "model.json").exists():
            write_text_atomic(self.folder / "model.json", json.dumps({"identity": self.identity, "dim": self.dim}))
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors"
        with atomic_file(self.folder / name) as tmp:
            save_file({"keys": key_array, "embeddings": vectors}, str(tmp), metadata={"model": self.identity})
        index = self._load()
        for key, vector in zip(keys, vectors):
            index[key] = vector
        if len(self._shards()) > MAX_SHARDS:
            self.compact()

    def compact(self) -> None:
        """Merge every shard into one; the merged shard exists before any old one is removed."""
        shards = self._shards()
        if len(shards) <= 1:
            return
        index = self._load()
        keys = list(index)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        vectors = np.stack([index[k] for k in keys]).astype(np.float32)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-merged.safetensors"
        with atomic_file(self.folder / name) as tmp:
            save_file({"keys": key_array, "embeddings": vectors}, str(tmp), metadata={"model": self.identity})
        for shard in shards:
            shard.unlink(missing_ok=True)


class EmbedStats(NamedTuple):
    texts: int
    unique: int
    cache_hits: int
    encoded: int


def embed_texts(
    texts: Sequence[str], encoder: TextEncoder, cache: EmbeddingCache | None = None
) -> tuple[np.ndarray, EmbedStats]:
    """Embeddings for ``texts`` (float32 [n, dim]), encoding only texts the cache does not have.

    Identical texts are encoded once. New vectors are stored every ``WRITE_EVERY`` texts.
    """
    keys = [text_key(t) for t in texts]
    first: dict[bytes, int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    unique_keys = list(first)
    if cache is not None:
        found, vectors = cache.get(unique_keys)
    else:
        found, vectors = np.zeros(len(unique_keys), bool), np.zeros((len(unique_keys), encoder.dim), np.float32)
    missing = np.flatnonzero(~found)
    for start in range(0, len(missing), WRITE_EVERY):
        rows = missing[start : start + WRITE_EVERY]
        encoded = np.asarray(encoder.encode([texts[first[unique_keys[r]]] for r in rows]), dtype=np.float32)
        if encoded.shape != (len(rows), encoder.dim):
            raise ValueError(f"encoder {encoder.identity} returned shape {encoded.shape}, expected [{len(rows)}, {encoder.dim}]")
        if not np.isfinite(encoded).all():
            raise ValueError(f"encoder {encoder.identity} returned non-finite values")
        vectors[rows] = encoded
        if cache is not None:
            cache.put([unique_keys[r] for r in rows], encoded)
        say(__name__, f"embedding {start + len(rows)}/{len(missing)} texts encoded ({int(found.sum())} cached)")
    if not len(missing):
        say(__name__, f"embedding 0/0 texts encoded (all {len(unique_keys)} distinct texts cached)")
    position = {key: i for i, key in enumerate(unique_keys)}
    out = vectors[[position[k] for k in keys]] if keys else np.zeros((0, encoder.dim), np.float32)
    stats = EmbedStats(len(texts), len(unique_keys), int(found.sum()), len(missing))
    return out.astype(np.float32, copy=False), stats
