"""Diagnostics of the semantic IDs and of the model's size.

- **codebook usage**: per quantizer level, the share of its K codewords that at least one catalog item uses.
  Low usage at a level means codebook collapse: the level carries little information.
- **collision rate**: the share of items whose full code tuple is shared with at least one other item. Such
  items are told apart only by their ID embedding (or not at all in the semantic-only variant).
- **embedding parameters**: the item-representation parameters of each variant, and their reduction against
  the id-only variant, one ``model.id_only_dim``-wide ID embedding per item (SASRec), the size claim of
  DESIGN.md section 1.7.

``codes`` are always the catalog's items only, int [N, L] - callers drop the padding row 0 of a model's
``semantic_ids`` table first (``item_codes`` does that).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa

from unisem.config.schema import MODEL_VARIANTS, ModelConfig, ModelVariant, QuantizerConfig

# Defaults are the configuration's, so a count without explicit dimensions describes the default model.
_MODEL, _QUANTIZER = ModelConfig(), QuantizerConfig()


def _codes(codes: np.ndarray) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be an [items, levels] array, got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise ValueError("codes must be non-negative integer codeword indices")
    return arr.astype(np.int64)


def item_codes(semantic_ids: np.ndarray) -> np.ndarray:
    """A model's ``semantic_ids`` table [N+1, L] without its padding row: the codes of items 1..N."""
    table = np.asarray(semantic_ids)
    if table.ndim != 2 or len(table) < 1:
        raise ValueError(f"a semantic-ID table is [N+1, levels] with the padding row 0, got shape {table.shape}")
    return _codes(table[1:])  # row 0 may hold a marker such as -1


def codebook_usage(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Per level, the share of the ``codebook_size`` codewords used by at least one item."""
    codes = _codes(codes)
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be positive, got {codebook_size}")
    if codes.size and codes.max() >= codebook_size:
        raise ValueError(f"code {int(codes.max())} is outside a codebook of {codebook_size} codewords")
    return [len(np.unique(codes[:, level])) / codebook_size for level in range(codes.shape[1])]


def collision_groups(codes: np.ndarray) -> np.ndarray:
    """int64 [N]: how many items (itself included) have each item's code tuple.

    O(N) memory and one sort whatever the catalog size (never an N x N comparison): each tuple is packed
    into one int64 key when the codebooks are small enough (256^3 is), else rows are sorted as tuples.
    """
    codes = _codes(codes)
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    base = int(codes.max()) + 1
    if codes.shape[1] and base ** codes.shape[1] < 2**62:
        keys = np.zeros(len(codes), dtype=np.int64)
        for level in range(codes.shape[1]):
            keys = keys * base + codes[:, level]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def collision_rate(codes: np.ndarray) -> float:
    """Share of items whose code tuple at least one other item also has (0.0 for no items)."""
    groups = collision_groups(codes)
    return float(np.mean(groups > 1)) if len(groups) else 0.0


def semantic_id_table(codes: np.ndarray, item_ids: Sequence[str]) -> pa.Table:
    """The semantic-ID table: item_index (1..N), item_id, semantic_id (list of codes, coarse to fine) and
    collisions (how many other items share that tuple)."""
    codes = _codes(codes)
    if len(item_ids) != len(codes):
        raise ValueError(f"{len(item_ids)} item ids for {len(codes)} code rows")
    levels = codes.shape[1]
    flat = pa.array(codes.reshape(-1).astype(np.int32), pa.int32())
    semantic_id = pa.FixedSizeListArray.from_arrays(flat, levels) if levels else pa.array([[]] * len(codes))
    return pa.table(
        {
            "item_index": pa.array(np.arange(1, len(codes) + 1), pa.int32()),
            "item_id": pa.array(list(item_ids), pa.string()),
            "semantic_id": semantic_id.cast(pa.list_(pa.int32())),
            "collisions": pa.array(collision_groups(codes) - 1, pa.int32()),
        }
    )


class EmbeddingParams(NamedTuple):
    params: int  # item-representation parameters of the variant
    id_only_params: int  # N * id_only_dim, the SASRec baseline
    reduction: float  # 1 - params / id_only_params


def embedding_param_count(
    variant: ModelVariant,
    num_items: int,
    id_dim: int = _MODEL.id_dim,
    levels: int = _QUANTIZER.levels,
    codebook_size: int = _QUANTIZER.codebook_size,
    code_dim: int = _QUANTIZER.code_dim,
    id_only_dim: int = _MODEL.id_only_dim,
) -> int:
    """Item-representation parameters: N*d_id + L*K*d_sem (unified), N*d (id-only), L*K*d_sem (semantic-only).

    Counts the lookup tables only (DESIGN.md 1.7): not the padding row, the RQ-VAE's MLPs nor the text
    embeddings, which are frozen inputs rather than learnt item parameters.
    """
    for name, value in (("num_items", num_items), ("id_dim", id_dim), ("levels", levels),
                        ("codebook_size", codebook_size), ("code_dim", code_dim), ("id_only_dim", id_only_dim)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    codebooks = levels * codebook_size * code_dim
    if variant == "unified":
        return num_items * id_dim + codebooks
    if variant == "id-only":
        return num_items * id_only_dim
    if variant == "semantic-only":
        return codebooks
    raise ValueError(f"unknown model variant {variant!r}: use one of {', '.join(MODEL_VARIANTS)}")


def embedding_params(variant: ModelVariant, num_items: int, **dims: int) -> EmbeddingParams:
    """The count of ``embedding_param_count`` and its reduction against the id-only variant (N * id_only_dim)."""
    params = embedding_param_count(variant, num_items, **dims)
    baseline = embedding_param_count("id-only", num_items, **dims)
    return EmbeddingParams(params, baseline, 1.0 - params / baseline if baseline else 0.0)


def embedding_params_for(cfg, num_items: int) -> EmbeddingParams:
    """``embedding_params`` with the dimensions of a ``UnisemConfig`` (model and quantizer sections)."""
    return embedding_params(
        cfg.model.variant,
        num_items,
        id_dim=cfg.model.id_dim,
        levels=cfg.quantizer.levels,
        codebook_size=cfg.quantizer.codebook_size,
        code_dim=cfg.quantizer.code_dim,
        id_only_dim=cfg.model.id_only_dim,
    )
