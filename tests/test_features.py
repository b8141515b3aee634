"""The Spark feature job against the in-memory reference (sequences_from_lists) and its folder contract."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_files import write_catalog, write_events
from unisem.config import load_config
from unisem.data.contract import DataContractError
from unisem.data.dataset import choose_cold_items, load_features, sequences_from_lists
from unisem.data.features import build_features

pytestmark = pytest.mark.spark


def random_log(rng: random.Random, users: int, items: list[str], lo: int = 1, hi: int = 12):
    seqs = {}
    events = []
    for u in range(users):
        uid = f"u{u:03d}"
        seq = [rng.choice(items) for _ in range(rng.randint(lo, hi))]
        seqs[uid] = seq
        events += [(uid, it, pos) for pos, it in enumerate(seq)]
    rng.shuffle(events)  # the job must restore the order itself
    return seqs, events


def as_ids(data):
    """The dataset in id space, so that two builds can be compared whatever their vocabularies."""
    ids = data.item_ids
    return {
        u: (
            [ids[i - 1] for i in data.histories[k]],
            ids[data.valid_items[k] - 1],
            ids[data.test_items[k] - 1],
        )
        for k, u in enumerate(data.user_ids)
    }


@pytest.mark.parametrize("ordered_by", ["position", "timestamp"])
def test_spark_build_agrees_with_sequences_from_lists(spark, tmp_path, ordered_by):
    rng = random.Random(3)
    items = [f"i{j:02d}" for j in range(40)]
    seqs, events = random_log(rng, 60, items)
    cat = write_catalog(tmp_path / "catalog.parquet", items)
    inter = write_events(tmp_path / "inter.parquet", events, ordered_by)
    cfg = load_config(None, ["data.max_seq_len=5", "data.cold_item_share=0.1", "data.seed=4"])

    out = build_features(cfg, cat, inter, tmp_path / "features")
    got = load_features(out)
    cold = tuple(got.item_ids[i - 1] for i in got.cold_items)
    assert len(cold) == 4  # 10% of 40
    assert set(cold) == set(choose_cold_items(items, 0.1, seed=4)), "Spark and in-memory choose the same cold items"
    want = sequences_from_lists(seqs, items, max_seq_len=5, cold_items=cold)

    assert sorted(got.user_ids) == sorted(want.user_ids)
    assert as_ids(got) == as_ids(want)
    assert got.item_ids == tuple(items)  # sorted ids -> indices 1..N in id order
    assert got.item_texts[0] == "Product number i00;9.5;Acme;Makeup;Eyes"
    assert got.item_titles[0] == "Product number i00"
    manifest = json.loads((out / "manifest.json").read_text())
    short = sum(1 for s in seqs.values() if len(s) < 3)
    assert manifest["users_dropped_short"] == short
    assert manifest["users"] == 60 - short
    assert manifest["cold_items"] == 4


def test_vocabularies_are_stable_across_nights_and_reruns_are_identical(spark, tmp_path):
    rng = random.Random(5)
    items1 = [f"b{j:02d}" for j in range(20)]
    seqs1, events1 = random_log(rng, 30, items1, lo=3)
    cfg = load_config()
    night1 = build_features(
        cfg,
        write_catalog(tmp_path / "c1.parquet", items1),
        write_events(tmp_path / "e1.parquet", events1),
        tmp_path / "night1",
    )
    # Night 2: new items "a.." that sort before the old ones, one old item gone, new users, more events.
    items2 = [i for i in items1 if i != "b05"] + ["a00", "a01"]
    seqs2, events2 = random_log(random.Random(6), 40, items2, lo=3)
    cat2 = write_catalog(tmp_path / "c2.parquet", items2)
    ev2 = write_events(tmp_path / "e2.parquet", events1 + [(u, i, 100 + p) for u, i, p in events2])
    night2 = build_features(cfg, cat2, ev2, tmp_path / "night2", previous=night1)

    d1, d2 = load_features(night1), load_features(night2)
    assert d2.item_ids[:20] == d1.item_ids  # known items keep their index; b05 stays (retired), its text kept
    assert d2.item_ids[20:] == ("a00", "a01")
    assert d2.item_texts[5] == d1.item_texts[5]
    assert d2.user_ids[: d1.num_users] == d1.user_ids
    manifest = json.loads((night2 / "manifest.json").read_text())
    assert manifest["retired_items"] == 1 and manifest["users_vanished"] == 0

    again = build_features(cfg, cat2, ev2, tmp_path / "night2", previous=night1)
    d3 = load_features(again)
    assert d3.user_ids == d2.user_ids and d3.item_ids == d2.item_ids
    assert all(np.array_equal(a, b) for a, b in zip(d3.histories, d2.histories))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_unknown_items_are_dropped_and_counted_or_fail(spark, tmp_path):
    items = ["x1", "x2", "x3"]
    events = [("u1", "x1", 0), ("u1", "ghost", 1), ("u1", "x2", 2), ("u1", "x3", 3), ("u1", "x3", 3)]
    cat = write_catalog(tmp_path / "c.parquet", items)
    ev = write_events(tmp_path / "e.parquet", events)
    out = build_features(load_config(), cat, ev, tmp_path / "f")
    data = load_features(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unknown_item_interactions"] == 1
    assert manifest["duplicate_interactions_dropped"] == 1
    assert [data.item_ids[i - 1] for i in data.histories[0]] == ["x1"]

    with pytest.raises(DataContractError, match=r"e\.parquet: 1 interaction\(s\) name items absent.*'ghost'"):
        build_features(load_config(None, ["data.unknown_items=fail"]), cat, ev, tmp_path / "f")
    assert load_features(tmp_path / "f").user_ids == ("u1",)  # the earlier output is untouched


def test_bad_inputs_name_the_file(spark, tmp_path):
    cat = write_catalog(tmp_path / "c.parquet", ["x1"])
    with pytest.raises(DataContractError, match="nothing.parquet: the interactions file does not exist"):
        build_features(load_config(), cat, tmp_path / "nothing.parquet", tmp_path / "f")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataContractError, match="junk.parquet: cannot read the catalog as Parquet"):
        build_features(load_config(), tmp_path / "junk.parquet", cat, tmp_path / "f")
    pq.write_table(pa.table({"user": ["u"], "item_id": ["x1"], "position": [1]}), tmp_path / "nouser.parquet")
    with pytest.raises(DataContractError, match="nouser.parquet: missing required column user_id"):
        build_features(load_config(), cat, tmp_path / "nouser.parquet", tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_the_spark_columns_are_the_contract_schemas():
    """The Spark readers' types come from the Arrow contract; written out by hand here, once, to check it."""
    from unisem.data.inputs import CATALOG_COLUMNS, INTERACTION_COLUMNS

    assert CATALOG_COLUMNS == {"item_id": "string", "title": "string", "description": "string", "brand": "string",
                               "categories": "array<string>", "price": "double", "text": "string"}
    assert INTERACTION_COLUMNS == {"user_id": "string", "item_id": "string", "timestamp": "timestamp",
                                   "position": "bigint"}
