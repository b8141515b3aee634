"""The answer rules of a served model (unknown ids, fallback, source) and the batch row layout, against
hand-computed values. The real model goes through the same functions in test_registry.py."""
from __future__ import annotations

import numpy as np
import pytest

from unisem.data.dataset import SequenceDataset
from unisem.registry.answers import (
    SOURCE_FALLBACK,
    SOURCE_MODEL,
    Answer,
    Popularity,
    answer,
    fallback_top_k,
    popularity_from_counts,
    read_popularity,
    split_known,
    training_popularity,
    write_popularity,
)
from unisem.registry.batch import BATCH_COLUMNS, answer_rows, user_histories
from unisem.model.inference_by_id import Recommendations


def _data() -> SequenceDataset:
    # items a..d = indices 1..4; user u0: history [1, 2], valid 2, test 4; user u1: history [2, 3], valid 1, test 3
    return SequenceDataset(
        item_ids=("a", "b", "c", "d"), item_texts=("a", "b", "c", "d"), item_titles=("A", "B", "C", "D"),
        user_ids=("u0", "u1"), histories=(np.array([1, 2]), np.array([2, 3])),
        valid_items=np.array([2, 1]), test_items=np.array([4, 3]), cold_items=np.array([], dtype=np.int64),
    )


def test_popularity_ranks_by_count_ties_in_catalog_order_and_leaves_out_unseen_items():
    pop = popularity_from_counts(["a", "b", "c", "d"], [1, 3, 0, 3])
    assert pop.item_ids == ("b", "d", "a")
    assert pop.shares == pytest.approx((3 / 7, 3 / 7, 1 / 7))
    with pytest.raises(ValueError, match="4 item ids but 3 counts"):
        popularity_from_counts(["a", "b", "c", "d"], [1, 2, 3])


def test_training_popularity_counts_only_the_training_histories():
    # training parts: [a, b] and [b, c] -> b 2, a 1, c 1 (validation and test items are not counted)
    pop = training_popularity(_data())
    assert pop.item_ids == ("b", "a", "c") and pop.shares == pytest.approx((0.5, 0.25, 0.25))


def test_popularity_round_trips_through_its_file(tmp_path):
    pop = Popularity(("b", "a"), (0.75, 0.25))
    write_popularity(pop, tmp_path, "test")
    assert read_popularity(tmp_path) == pop
    assert read_popularity(tmp_path / "nowhere") == Popularity.empty()
    (tmp_path / "popularity.json").write_text('{"item_ids": ["a"], "shares": []}')
    with pytest.raises(ValueError, match="popularity.json"):
        read_popularity(tmp_path)


def test_split_known_keeps_order_and_names_each_unknown_id_once():
    assert split_known(["x", "a", "y", "x", "b"], {"a", "b"}) == (["a", "b"], ["x", "y"])
    assert split_known([], {"a"}) == ([], [])


def test_fallback_skips_excluded_and_unknown_items():
    pop = Popularity(("b", "d", "a"), (0.5, 0.3, 0.2))
    assert fallback_top_k(pop, 2) == (["b", "d"], [0.5, 0.3])
    assert fallback_top_k(pop, 5, exclude={"b"}, known={"a", "b"}) == (["a"], [0.2])


class _Serving:
    """Our ServingModel's two members that ``answer`` uses; the real one is exercised in test_registry."""

    index = {"a": 1, "b": 2, "c": 3}

    def __init__(self):
        self.calls = []

    def recommend(self, histories, k, exclude_seen=True):
        self.calls.append([list(h) for h in histories])
        return Recommendations([["c"] for _ in histories], [[1.5] for _ in histories])


def test_answer_drops_unknown_ids_and_falls_back_when_nothing_is_known():
    serving = _Serving()
    pop = Popularity(("b", "zz", "a"), (0.5, 0.3, 0.2))  # "zz" is not in the model: never recommended
    out = answer(serving, pop, [["a", "nope"], ["nope", "nope2"], []], k=2)
    assert serving.calls == [[["a"]]]  # one batched model call, unknown ids removed
    assert out == [
        Answer(["c"], [1.5], SOURCE_MODEL, ["nope"]),
        Answer(["b", "a"], [0.5, 0.2], SOURCE_FALLBACK, ["nope", "nope2"]),
        Answer(["b", "a"], [0.5, 0.2], SOURCE_FALLBACK, []),
    ]
    assert answer(serving, Popularity.empty(), [[]], k=3) == [Answer([], [], SOURCE_FALLBACK, [])]
    with pytest.raises(ValueError, match="k must be at least 1"):
        answer(serving, pop, [["a"]], k=0)


def test_batch_rows_one_per_user_and_rank():
    rows = answer_rows(["u0", "u1"], [Answer(["c", "a"], [2.0, 1.0], SOURCE_MODEL, []),
                                      Answer(["b"], [0.5], SOURCE_FALLBACK, ["x"])], "7", "2026-01-01T00-00-00")
    assert tuple(rows.columns) == BATCH_COLUMNS
    assert rows.to_dict("records") == [
        {"user_id": "u0", "rank": 1, "item_id": "c", "score": 2.0, "model_version": "7",
         "run_id": "2026-01-01T00-00-00", "source": "model"},
        {"user_id": "u0", "rank": 2, "item_id": "a", "score": 1.0, "model_version": "7",
         "run_id": "2026-01-01T00-00-00", "source": "model"},
        {"user_id": "u1", "rank": 1, "item_id": "b", "score": 0.5, "model_version": "7",
         "run_id": "2026-01-01T00-00-00", "source": "fallback"},
    ]
    assert str(rows["rank"].dtype) == "int32"


def test_batch_histories_are_the_whole_known_history():
    frame = user_histories(_data())
    assert frame["user_id"].tolist() == ["u0", "u1"]
    assert frame["history"].tolist() == [["a", "b", "b", "d"], ["b", "c", "a", "c"]]


def test_the_model_wheel_is_reproducible_complete_and_named_by_its_code(tmp_path):
    import base64
    import hashlib
    import zipfile

    from unisem.registry.wheel import build_wheel

    pkg = tmp_path / "pkg"
    (pkg / "registry" / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (pkg / "registry" / "answers.py").write_text("X = 1\n")
    (pkg / "registry" / "__pycache__" / "answers.cpython-311.pyc").write_bytes(b"compiled")
    first = build_wheel(tmp_path / "a", ["torch==2.13.0", "mlflow==3.17.2"], package_dir=pkg)
    again = build_wheel(tmp_path / "b", ["torch==2.13.0", "mlflow==3.17.2"], package_dir=pkg)
    assert first.name == again.name and first.read_bytes() == again.read_bytes()
    assert first.name.startswith("unisem-0.1.0+c") and first.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        dist_info = first.name.split("-py3")[0] + ".dist-info"
        assert "unisem/registry/answers.py" in names and not any("__pycache__" in n for n in names)
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        assert "Requires-Dist: torch==2.13.0" in metadata and "Requires-Dist: mlflow==3.17.2" in metadata
        for line in zf.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if digest:
                data = zf.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert int(size) == len(data)
    (pkg / "registry" / "answers.py").write_text("X = 2\n")
    assert build_wheel(tmp_path / "c", ["torch==2.13.0"], package_dir=pkg).name != first.name
