"""Demo data: deterministic, contract-conforming, dirty only a little, and sequential enough to learn from."""
from __future__ import annotations

import collections
import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from unisem.cli import main
from unisem.config.schema import DemoConfig
from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE, read_catalog, read_interactions
from unisem.data.demo import ensure_demo_data, generate_demo
from unisem.data.large import generate_large

SMALL = DemoConfig(items=400, users=300, seed=3)


@pytest.fixture(scope="module")
def default_demo():
    return generate_demo(DemoConfig())


def sequences(interactions) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    rows = interactions.sort_by([("user_id", "ascending"), ("position", "ascending")]).to_pydict()
    for user, item in zip(rows["user_id"], rows["item_id"]):
        out[user].append(item)
    return out


def hit_rates_at_10(seqs: dict[str, list[str]]) -> tuple[float, float]:
    """Popularity vs. a first-order "next item follows the last item" Markov chain, on each user's last item.

    Both are fitted on everything but the last item; the Markov ranking falls back to popularity to fill 10.
    """
    popularity: collections.Counter = collections.Counter()
    transitions: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for seq in seqs.values():
        train = seq[:-1]
        popularity.update(train)
        for a, b in zip(train, train[1:]):
            transitions[a][b] += 1
    top = [item for item, _ in popularity.most_common(10)]
    pop_hits = markov_hits = 0
    for seq in seqs.values():
        last, target = seq[-2], seq[-1]
        ranked = [item for item, _ in transitions[last].most_common(10)]
        ranked += [item for item in top if item not in ranked]
        pop_hits += target in top
        markov_hits += target in ranked[:10]
    return pop_hits / len(seqs), markov_hits / len(seqs)


def test_same_seed_same_data_other_seed_other_data():
    a, b = generate_demo(SMALL), generate_demo(SMALL)
    assert a.catalog.equals(b.catalog) and a.interactions.equals(b.interactions)
    c = generate_demo(DemoConfig(items=400, users=300, seed=4))
    assert not c.interactions.equals(a.interactions)


def test_shape_and_contract(default_demo):
    catalog, inter = default_demo
    assert catalog.num_rows == 2000 and len(pc.unique(inter["user_id"])) == 1000
    assert len(pc.unique(catalog["item_id"])) == 2000
    assert pc.all(pc.is_in(inter["item_id"], value_set=catalog["item_id"].combine_chunks())).as_py()
    lengths = [len(s) for s in sequences(inter).values()]
    assert min(lengths) >= 5 and max(lengths) <= 40
    # Timestamps strictly increase along each user's positions.
    rows = inter.sort_by([("user_id", "ascending"), ("position", "ascending")]).to_pydict()
    for i in range(1, len(rows["user_id"])):
        if rows["user_id"][i] == rows["user_id"][i - 1]:
            assert rows["timestamp"][i] > rows["timestamp"][i - 1]
    # Real-looking text: every item has a brand, a category path and a price.
    assert catalog["brand"].null_count == 0 and catalog["price"].null_count == 0
    assert min(len(c) for c in catalog["categories"].to_pylist()) >= 2


def test_a_little_dirty_but_not_much(default_demo):
    titles = default_demo.catalog["title"].to_pylist()
    present = [t for t in titles if t is not None]
    missing = len(titles) - len(present)
    html = sum("&amp;" in t for t in present)
    duplicated = len(present) - len(set(present))
    assert 0 < missing <= 0.01 * len(titles)
    assert 0 < html <= 0.05 * len(titles)
    assert 0 < duplicated <= 0.02 * len(titles)


def test_next_item_markov_beats_popularity_by_a_wide_margin(default_demo):
    pop, markov = hit_rates_at_10(sequences(default_demo.interactions))
    assert markov >= 0.4, markov
    assert markov >= 4 * pop, (markov, pop)


def test_popularity_has_a_head_but_no_item_dominates(default_demo):
    counts = np.sort(pc.value_counts(default_demo.interactions["item_id"]).field("counts").to_numpy())[::-1]
    top1pct = counts[: len(counts) // 100].sum() / counts.sum()
    assert 0.03 < top1pct < 0.3


def test_hit_rates_on_hand_made_sequences():
    # Only three items are seen in training, so both top-10 lists hold all of them: u1's b and u2's c are
    # hits for both, u3's never-seen d a miss for both.
    seqs = {"u1": ["a", "b", "a", "b"], "u2": ["c", "a", "b", "c"], "u3": ["a", "b", "d"]}
    assert hit_rates_at_10(seqs) == (2 / 3, 2 / 3)
    # Training counts: a 14, x0..x9 3 each, z 2, c 1, so popularity's top 10 is a, x0..x8 and misses z;
    # a -> z is seen twice. Hits: q and t (target z after a) for Markov only, r (target a) for both;
    # the ten p users' b was never seen in training.
    seqs = {f"p{i}": [f"x{i}", f"x{i}", f"x{i}", "a", "b"] for i in range(10)}
    seqs |= {"q": ["a", "z", "a", "z"], "t": ["c", "a", "z"], "r": ["a", "z", "a"]}
    assert hit_rates_at_10(seqs) == (1 / 13, 3 / 13)


def test_ensure_demo_data_generates_once_and_regenerates_on_change(unisem_home):
    folder = ensure_demo_data(SMALL)
    assert folder == unisem_home / "data" / "demo"
    read_catalog(folder / CATALOG_FILE), read_interactions(folder / INTERACTIONS_FILE)
    stamp = (folder / CATALOG_FILE).stat().st_mtime_ns
    assert ensure_demo_data(SMALL) == folder and (folder / CATALOG_FILE).stat().st_mtime_ns == stamp
    ensure_demo_data(DemoConfig(items=400, users=300, seed=5))
    assert json.loads((folder / "demo.json").read_text())["seed"] == 5
    assert pq.read_table(folder / CATALOG_FILE).num_rows == 400


def test_cli_demo(tmp_path, capsys):
    args = ["data", "demo", "--out", str(tmp_path / "d"), "--set", "data.demo.items=100", "--set", "data.demo.users=50"]
    assert main(args) == 0
    assert pq.read_table(tmp_path / "d" / CATALOG_FILE).num_rows == 100
    assert "100 items, 50 users" in capsys.readouterr().out


def test_generated_data_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"not really a picture")
    small = ["--set", "data.demo.items=100", "--set", "data.demo.users=50"]
    assert main(["data", "demo", "--out", str(stranger), *small]) == 1
    assert f"--out {stranger}: is a folder that holds no earlier generated data (demo.json missing)" in capsys.readouterr().err
    assert main(["data", "large", "--out", str(stranger), "--items", "200", "--interactions", "1000"]) == 1
    assert "holds no earlier generated data" in capsys.readouterr().err
    assert (stranger / "holiday.jpg").read_bytes() == b"not really a picture"
    # an earlier generated folder is regenerated without a flag; a stranger's only with --replace
    assert main(["data", "large", "--out", str(tmp_path / "gen"), "--items", "200", "--interactions", "1000"]) == 0
    assert main(["data", "demo", "--out", str(tmp_path / "gen"), *small]) == 0
    assert main(["data", "demo", "--out", str(stranger), "--replace", *small]) == 0
    assert (stranger / "demo.json").exists() and not (stranger / "holiday.jpg").exists()


def test_generate_large_in_chunks(tmp_path):
    out = generate_large(tmp_path / "large", items=1000, interactions=10_000, seed=1, chunk_rows=3000)
    catalog = read_catalog(out / CATALOG_FILE)
    inter = read_interactions(out / INTERACTIONS_FILE)
    assert catalog.num_rows == 1000 and inter.num_rows == 10_000
    assert pq.ParquetFile(out / INTERACTIONS_FILE).metadata.num_row_groups == 4  # one per chunk
    assert pc.all(pc.is_in(inter["item_id"], value_set=catalog["item_id"].combine_chunks())).as_py()
    users = inter["user_id"].to_numpy(zero_copy_only=False)
    # Users are contiguous runs, positions restart at 0 and timestamps increase within a user.
    changes = np.flatnonzero(users[1:] != users[:-1]) + 1
    assert len(set(users)) == len(changes) + 1
    pos = inter["position"].to_numpy()
    assert (pos[changes] == 0).all() and pos[0] == 0
    ts = inter["timestamp"].cast("int64").to_numpy()
    same = users[1:] == users[:-1]
    assert (np.diff(ts)[same] > 0).all() and (np.diff(pos)[same] == 1).all()
    again = generate_large(tmp_path / "again", items=1000, interactions=10_000, seed=1, chunk_rows=3000)
    assert read_interactions(again / INTERACTIONS_FILE).equals(inter)
