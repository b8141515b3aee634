"""The training inputs in memory, and their on-disk form (the features folder written by the feature job).

Features folder (``RunLayout.features``), every table Parquet (a file or a Spark part-file folder):

- ``items``      item_index int32 (1..N; 0 is padding), item_id string, text string, title string
- ``users``      user_index int32 (0..U-1), user_id string
- ``sequences``  user_index int32, history list<int32> (chronological, the last ``max_seq_len`` items before
                 the two held out), valid_item int32, test_item int32   -- the leave-one-out split
- ``cold_items`` item_index int32: items held out of training entirely (never in a history)
- ``manifest.json`` counts and the settings that produced the folder

Every catalog item gets an index, interacted or not, so an item with text and no interactions is still
scored through its semantic tokens.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ITEMS_TABLE = "items"
USERS_TABLE = "users"
SEQUENCES_TABLE = "sequences"
COLD_ITEMS_TABLE = "cold_items"
MANIFEST_FILE = "manifest.json"


class FeaturesError(ValueError):
    """A features folder is missing a table or a column, or its tables disagree."""


@dataclass(frozen=True)
class SequenceDataset:
    """Leave-one-out sequences over a 1-based item vocabulary (index 0 pads)."""

    item_ids: tuple[str, ...]  # item_ids[i - 1] is the id of item index i
    item_texts: tuple[str, ...]  # aligned with item_ids
    item_titles: tuple[str, ...]  # aligned with item_ids, for display
    user_ids: tuple[str, ...]  # user_ids[u] is the id of user index u
    histories: tuple[np.ndarray, ...]  # per user index: int64 item indices, chronological
    valid_items: np.ndarray  # int64 [U]
    test_items: np.ndarray  # int64 [U]
    cold_items: np.ndarray  # int64 item indices held out of training

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def users(self, rows: np.ndarray) -> "SequenceDataset":
        """The same catalog with only the users at ``rows`` (e.g. a validation sample)."""
        rows = np.asarray(rows, dtype=np.int64)
        return SequenceDataset(self.item_ids, self.item_texts, self.item_titles, tuple(self.user_ids[u] for u in rows),
                               tuple(self.histories[u] for u in rows), self.valid_items[rows], self.test_items[rows],
                               self.cold_items)

    def sample_users(self, limit: int, seed: int) -> "SequenceDataset":
        """All users up to ``limit`` (0 = no limit), else one seeded sample of ``limit`` of them, in their order."""
        if limit == 0 or self.num_users <= limit:
            return self
        return self.users(np.sort(np.random.default_rng(seed).choice(self.num_users, size=limit, replace=False)))

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if not (len(self.histories) == len(self.valid_items) == len(self.test_items) == n):
            raise FeaturesError("histories, valid_items and test_items must have one entry per user")
        if not (len(self.item_texts) == len(self.item_titles) == len(self.item_ids)):
            raise FeaturesError("item_texts and item_titles must align with item_ids")


def _read(folder: Path, name: str, columns: tuple[str, ...]) -> pa.Table:
    candidates = [folder / name, folder / f"{name}.parquet"]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise FeaturesError(f"{folder}: missing table {name} (expected {name}/ or {name}.parquet)")
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise FeaturesError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return table


def _read_items(folder: Path, columns: tuple[str, ...]) -> pa.Table:
    """The ``items`` table sorted by item_index, which must run 1..N without gaps."""
    items = _read(folder, ITEMS_TABLE, ("item_index", *columns)).sort_by("item_index")
    index = items["item_index"].to_numpy()
    if len(index) and not np.array_equal(index, np.arange(1, len(index) + 1)):
        raise FeaturesError(f"{folder}/{ITEMS_TABLE}: item_index must run 1..N without gaps")
    return items


class ItemTexts(NamedTuple):
    item_ids: list[str]  # item_ids[i - 1] is item index i
    texts: list[str]


def read_item_texts(folder: str | Path) -> ItemTexts:
    """Only the item ids and texts of a features folder, by item_index (what the text embeddings need)."""
    folder = Path(folder)
    items = _read_items(folder, ("item_id", "text"))
    if items.num_rows == 0:
        raise FeaturesError(f"{folder}/{ITEMS_TABLE}: the items table is empty")
    return ItemTexts(items["item_id"].to_pylist(), [t or "" for t in items["text"].to_pylist()])


def load_features(folder: str | Path) -> SequenceDataset:
    folder = Path(folder)
    items = _read_items(folder, ("item_id", "text", "title"))
    users = _read(folder, USERS_TABLE, ("user_index", "user_id")).sort_by("user_index")
    seqs = _read(folder, SEQUENCES_TABLE, ("user_index", "history", "valid_item", "test_item")).sort_by("user_index")
    if seqs.num_rows != users.num_rows or not np.array_equal(
        seqs["user_index"].to_numpy(), users["user_index"].to_numpy()
    ):
        raise FeaturesError(f"{folder}: sequences and users must list the same user indices")
    cold = _read(folder, COLD_ITEMS_TABLE, ("item_index",))
    histories = tuple(np.asarray(h if h is not None else [], dtype=np.int64) for h in seqs["history"].to_pylist())
    return SequenceDataset(
        item_ids=tuple(items["item_id"].to_pylist()),
        item_texts=tuple(t or "" for t in items["text"].to_pylist()),
        item_titles=tuple(t or "" for t in items["title"].to_pylist()),
        user_ids=tuple(users["user_id"].to_pylist()),
        histories=histories,
        valid_items=seqs["valid_item"].to_numpy().astype(np.int64),
        test_items=seqs["test_item"].to_numpy().astype(np.int64),
        cold_items=np.asarray(cold["item_index"].to_numpy(), dtype=np.int64),
    )


def write_features(data: SequenceDataset, folder: str | Path, manifest: dict | None = None) -> Path:
    """Write ``data`` in the features layout (single Parquet files); the Spark job writes the same tables."""
    from unisem.atomic import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        pq.write_table(
            pa.table(
                {
                    "item_index": pa.array(np.arange(1, data.num_items + 1), pa.int32()),
                    "item_id": pa.array(data.item_ids, pa.string()),
                    "text": pa.array(data.item_texts, pa.string()),
                    "title": pa.array(data.item_titles, pa.string()),
                }
            ),
            tmp / f"{ITEMS_TABLE}.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "user_index": pa.array(np.arange(data.num_users), pa.int32()),
                    "user_id": pa.array(data.user_ids, pa.string()),
                }
            ),
            tmp / f"{USERS_TABLE}.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "user_index": pa.array(np.arange(data.num_users), pa.int32()),
                    "history": pa.array([h.tolist() for h in data.histories], pa.list_(pa.int32())),
                    "valid_item": pa.array(data.valid_items, pa.int32()),
                    "test_item": pa.array(data.test_items, pa.int32()),
                }
            ),
            tmp / f"{SEQUENCES_TABLE}.parquet",
        )
        pq.write_table(
            pa.table({"item_index": pa.array(data.cold_items, pa.int32())}), tmp / f"{COLD_ITEMS_TABLE}.parquet"
        )
        meta = {"items": data.num_items, "users": data.num_users, **(manifest or {})}
        (tmp / MANIFEST_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


def cold_hash(item_id: str, seed: int) -> str:
    """The key that orders items for the cold-start holdout: a seeded hash of the id, so an item's place in
    the order never depends on the rest of the catalog (the Spark feature job computes the same key with
    ``sha2``)."""
    return hashlib.sha256(f"{int(seed)}:{item_id}".encode()).hexdigest()


def choose_cold_items(item_ids: Sequence[str], share: float, seed: int) -> tuple[str, ...]:
    """The first ``int(share * N)`` item ids by ``(cold_hash, id)``: the cold-start holdout of a catalog."""
    k = int(share * len(item_ids))
    return tuple(sorted(item_ids, key=lambda i: (cold_hash(i, seed), i))[:k])


def sequences_from_lists(
    sequences: dict[str, list[str]],
    item_ids: list[str],
    item_texts: list[str] | None = None,
    max_seq_len: int = 50,
    cold_items: tuple[str, ...] = (),
) -> SequenceDataset:
    """Build a dataset from chronological per-user item-id lists (small data, tests, benchmarks).

    The Spark feature job is the production path for the same transformation; this one exists for data
    that fits in memory and must agree with it (a test checks that both give the same result).
    """
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    cold = {index[c] for c in cold_items}
    users, histories, valid, test = [], [], [], []
    for user, seq in sequences.items():
        if len(seq) < 3:
            continue
        idx = [index[s] for s in seq]
        hist = [i for i in idx[:-2] if i not in cold][-max_seq_len:]
        users.append(user)
        histories.append(np.asarray(hist, dtype=np.int64))
        valid.append(idx[-2])
        test.append(idx[-1])
    texts = item_texts or list(item_ids)
    return SequenceDataset(
        item_ids=tuple(item_ids),
        item_texts=tuple(texts),
        item_titles=tuple(texts),
        user_ids=tuple(users),
        histories=tuple(histories),
        valid_items=np.asarray(valid, dtype=np.int64),
        test_items=np.asarray(test, dtype=np.int64),
        cold_items=np.asarray(sorted(cold), dtype=np.int64),
    )


def pad_left(sequences: list[np.ndarray] | tuple[np.ndarray, ...], max_len: int) -> np.ndarray:
    """Stack sequences into an int64 [B, max_len] array, keeping the last ``max_len`` items, zeros in front.

    Left padding puts every user's latest item in the last column, which is where the causal model reads
    the user state from.
    """
    out = np.zeros((len(sequences), max_len), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-max_len:]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out


def split_inputs(data: SequenceDataset, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Model inputs and targets of one leave-one-out split.

    ``valid``: the training history predicts the second-to-last item; ``test``: history plus that item
    predicts the last one.
    """
    if split == "valid":
        return list(data.histories), data.valid_items
    if split == "test":
        return [np.append(h, v) for h, v in zip(data.histories, data.valid_items)], data.test_items
    raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
