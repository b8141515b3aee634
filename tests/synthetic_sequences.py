"""Tiny synthetic sequences with learnable structure, for the model, training, Ray and registry tests.

Items form ``groups`` chains; a user walks along one chain (item i is followed by the next item of its
chain), so the next item is predictable from the last one while popularity is nearly flat. Text embeddings
are noisy group centroids, so the semantic part carries the group.
"""
from __future__ import annotations

import numpy as np

from unisem.data.dataset import SequenceDataset, sequences_from_lists


def chain_dataset(items: int = 60, users: int = 300, groups: int = 6, length: tuple[int, int] = (5, 12), seed: int = 0,
                  cold: int = 0, text_dim: int = 16) -> tuple[SequenceDataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    item_ids = [f"i{j}" for j in range(items)]
    group_of = np.arange(items) % groups
    chains = [np.flatnonzero(group_of == g) for g in range(groups)]
    cold_ids = tuple(item_ids[j] for j in rng.choice(items, size=cold, replace=False)) if cold else ()
    seqs: dict[str, list[str]] = {}
    for u in range(users):
        chain = chains[rng.integers(groups)]
        start = rng.integers(len(chain))
        n = int(rng.integers(*length))
        seqs[f"u{u}"] = [item_ids[chain[(start + k) % len(chain)]] for k in range(n)]
    data = sequences_from_lists(seqs, item_ids, [f"item {j} group {group_of[j]}" for j in range(items)], cold_items=cold_ids)
    centroids = rng.normal(size=(groups, text_dim)).astype(np.float32)
    text = np.zeros((items + 1, text_dim), dtype=np.float32)
    text[1:] = centroids[group_of] + 0.3 * rng.normal(size=(items, text_dim)).astype(np.float32)
    return data, text


# A model small enough to train in seconds on the chain data (config overrides, `--set` syntax).
TINY_MODEL = [
    "quantizer.levels=2",
    "quantizer.codebook_size=8",
    "quantizer.code_dim=8",
    "quantizer.encoder_hidden=[16]",
    "quantizer.kmeans_iters=5",
    "model.num_blocks=1",
    "model.num_heads=1",
    "model.ffn_dim=16",
    "model.dropout=0.1",
    "model.id_dim=4",
    "data.max_seq_len=12",
    "training.batch_size=64",
    "training.show_progress=false",
]
