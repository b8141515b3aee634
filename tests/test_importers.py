"""Importers: every format on small files, every bad-input case with its message, no partial output."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unisem.cli import main
from unisem.data.contract import CATALOG_FILE, INTERACTIONS_FILE, DataContractError, read_catalog, read_interactions
from unisem.data.importers import import_amazon, import_sequence_files, import_tables, parse_mapping
from unisem.data.importers.amazon import parse_price


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def jl(*records: dict) -> list[str]:
    return [json.dumps(r) for r in records]


def read_out(out: Path) -> tuple[list[dict], list[dict]]:
    return read_catalog(out / CATALOG_FILE).to_pylist(), read_interactions(out / INTERACTIONS_FILE).to_pylist()


# --- sequence files (amazon-beauty format) ---------------------------------------------------------------

ITEMS = (
    {"item_id": 1, "asin": "A1", "title": "Red Lipstick", "brand": "OPI", "categories": ["Makeup", "Lips"],
     "price": 12.0, "text": "Red Lipstick;12.0;OPI;Makeup;Lips"},
    {"item_id": 2, "asin": "A2", "title": None, "brand": None, "categories": ["Nails"], "price": None, "text": "Nails"},
    {"item_id": 3, "asin": "A3", "title": "Soap &amp; Co", "brand": "X", "categories": [], "price": 3, "text": "Soap &amp; Co;3;X"},
)


def beauty_source(tmp_path: Path, sequences: list[str], items=ITEMS) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    write(src / "items.jsonl", jl(*items))
    write(src / "sequences.txt", sequences)
    return src


def test_sequence_files_positions_text_and_string_ids(tmp_path):
    src = beauty_source(tmp_path, ["10 1 2 3", "", "11 3 1"])
    summary = import_sequence_files(src, tmp_path / "out")
    assert (summary.items, summary.users, summary.interactions, summary.dropped_unknown) == (3, 2, 5, 0)
    catalog, inter = read_out(tmp_path / "out")
    assert catalog[0]["item_id"] == "1" and catalog[0]["text"] == "Red Lipstick;12.0;OPI;Makeup;Lips"
    assert catalog[1]["title"] is None and catalog[2]["title"] == "Soap &amp; Co" and catalog[2]["price"] == 3.0
    assert [(r["user_id"], r["item_id"], r["position"]) for r in inter] == [
        ("10", "1", 0), ("10", "2", 1), ("10", "3", 2), ("11", "3", 0), ("11", "1", 1)
    ]
    assert all(r["timestamp"] is None for r in inter)


def test_sequence_files_unknown_items_drop_and_fail(tmp_path):
    src = beauty_source(tmp_path, ["10 1 2", "11 3 9 1 9"])
    summary = import_sequence_files(src, tmp_path / "out", unknown_items="drop")
    assert summary.dropped_unknown == 2 and summary.interactions == 4
    with pytest.raises(DataContractError, match=r"sequences.txt: line 2: field item_id: unknown item '9'.*2 interactions"):
        import_sequence_files(src, tmp_path / "out2", unknown_items="fail")
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize(
    "items, sequences, message",
    [
        (ITEMS + ({"item_id": 2, "title": "again"},), ["1 1 2"], r"items.jsonl: line 4: field item_id: duplicated id '2' \(first seen at line 2\)"),
        (ITEMS, ["1 1 2", "1 3"], r"sequences.txt: line 2: field user_id: user '1' already has a sequence at line 1"),
        (ITEMS, ["1 1 2", "2"], r"sequences.txt: line 2: user '2' has no items"),
        (({"item_id": 1, "price": "cheap"},), ["1 1"], r"items.jsonl: line 1: field price: not a number: 'cheap'"),
        (({"title": "no id"},), ["1 1"], r"items.jsonl: line 1: field item_id is missing"),
    ],
)
def test_sequence_files_bad_input(tmp_path, items, sequences, message):
    src = beauty_source(tmp_path, sequences, items)
    with pytest.raises(DataContractError, match=message):
        import_sequence_files(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_invalid_json_line_and_empty_files_are_named(tmp_path):
    src = beauty_source(tmp_path, ["1 1"])
    (src / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 2,,}\n')
    with pytest.raises(DataContractError, match=r"items.jsonl: line 2: invalid JSON"):
        import_sequence_files(src, tmp_path / "out")
    (src / "items.jsonl").write_text("")
    with pytest.raises(DataContractError, match=r"items.jsonl: the file is empty"):
        import_sequence_files(src, tmp_path / "out")
    write(src / "items.jsonl", jl(*ITEMS))
    (src / "sequences.txt").write_text("\n\n")
    with pytest.raises(DataContractError, match=r"sequences.txt: the file is empty"):
        import_sequence_files(src, tmp_path / "out")


def test_failed_import_keeps_the_previous_good_output(tmp_path):
    src = beauty_source(tmp_path, ["10 1 2 3"])
    out = tmp_path / "out"
    import_sequence_files(src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (src / "sequences.txt").write_text("10 1 2 3\n11 1 404\n")
    with pytest.raises(DataContractError, match="line 2"):
        import_sequence_files(src, out, unknown_items="fail")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary folder left behind


def test_rerun_is_idempotent(tmp_path):
    src = beauty_source(tmp_path, ["10 1 2 3", "11 2 1"])
    import_sequence_files(src, tmp_path / "out")
    first = read_out(tmp_path / "out")
    import_sequence_files(src, tmp_path / "out")
    assert read_out(tmp_path / "out") == first


@pytest.mark.beauty
def test_beauty_import_counts(beauty_dir, tmp_path):
    summary = import_sequence_files(beauty_dir, tmp_path / "beauty")
    assert (summary.users, summary.items, summary.interactions) == (22_363, 12_101, 198_502)
    assert summary.dropped_unknown == 0
    catalog = pq.read_table(tmp_path / "beauty" / CATALOG_FILE)
    assert catalog["title"].null_count == 7
    assert catalog["text"].null_count == 0


# --- Amazon dumps ----------------------------------------------------------------------------------------

META_2014 = [
    "{'asin': 'B001', 'title': 'Rose Oil', 'price': 9.5, 'brand': 'Bloom', "
    "'categories': [['Beauty', 'Skin Care', 'Oils'], ['Beauty', 'Fragrance']], 'description': 'An oil.', "
    "'salesRank': {'Beauty': 12}}",
    "{'asin': 'B002', 'categories': [['Beauty', 'Hair Care']], 'related': {'also_bought': ['B001']}}",
]
REVIEWS = jl(
    {"reviewerID": "U1", "asin": "B001", "unixReviewTime": 1300000000, "overall": 5.0},
    {"reviewerID": "U1", "asin": "B002", "unixReviewTime": 1300086400},
    {"reviewerID": "U2", "asin": "B002", "reviewTime": "09 13, 2009"},
)


@pytest.mark.parametrize("gz", [False, True])
def test_amazon_2014(tmp_path, gz):
    meta = write(tmp_path / ("meta.json.gz" if gz else "meta.json"), META_2014, gz)
    reviews = write(tmp_path / ("reviews.json.gz" if gz else "reviews.json"), REVIEWS, gz)
    summary = import_amazon(reviews, meta, tmp_path / "out")
    assert (summary.items, summary.users, summary.interactions) == (2, 2, 3)
    catalog, inter = read_out(tmp_path / "out")
    assert catalog[0] == {
        "item_id": "B001", "title": "Rose Oil", "description": "An oil.", "brand": "Bloom",
        "categories": ["Beauty", "Skin Care", "Oils"], "price": 9.5, "text": None,
    }
    assert catalog[1]["title"] is None and catalog[1]["categories"] == ["Beauty", "Hair Care"]
    assert [int(r["timestamp"].timestamp()) for r in inter] == [1300000000, 1300086400, 1252800000]
    assert [r["position"] for r in inter] == [1, 2, 3]  # line numbers break same-day ties


def test_amazon_2018_prices_descriptions_and_duplicates(tmp_path):
    meta_lines = jl(
        {"asin": "X1", "title": "Serum", "brand": "", "category": ["All Beauty", "Serums"], "price": "$1,299.00",
         "description": ["Line one.", "Line two."]},
        {"asin": "X2", "title": "Mask", "category": [], "price": "$5.99 - $9.99"},
        {"asin": "X3", "title": "Gel", "price": ".a-box-inner{background-color:#fff}"},
        {"asin": "X1", "title": "Serum", "price": "$1,299.00"},
    )
    meta = write(tmp_path / "meta.json", meta_lines)
    reviews = write(tmp_path / "reviews.json", jl({"reviewerID": "U", "asin": "X2", "unixReviewTime": 1500000000}))
    with pytest.raises(DataContractError, match=r"meta.json: line 4: field asin: duplicated id 'X1' \(first seen at line 1\)"):
        import_amazon(reviews, meta, tmp_path / "out")
    summary = import_amazon(reviews, meta, tmp_path / "out", duplicates="first")
    assert summary.items == 3 and summary.items_without_interactions == 2
    catalog, _ = read_out(tmp_path / "out")
    assert [c["price"] for c in catalog] == [1299.0, 5.99, None]
    assert catalog[0]["description"] == "Line one. Line two." and catalog[0]["brand"] is None
    assert catalog[0]["categories"] == ["All Beauty", "Serums"] and catalog[1]["categories"] is None


def test_parse_price():
    assert [parse_price(v) for v in (3, 2.5, "$12.99", " $7 ", "$1,000.50", "$5 - $9", "", "free", None, True)] == [
        3.0, 2.5, 12.99, 7.0, 1000.5, 5.0, None, None, None, None
    ]


@pytest.mark.parametrize(
    "review, message",
    [
        ({"reviewerID": "U", "asin": "B001", "unixReviewTime": "yesterday"}, r"reviews.json: line 2: field unixReviewTime: unparsable timestamp 'yesterday'"),
        ({"reviewerID": "U", "asin": "B001"}, r"reviews.json: line 2: field unixReviewTime is missing"),
        ({"reviewerID": "U", "asin": "B001", "reviewTime": "13 45, 2009"}, r"line 2: field reviewTime: unparsable date"),
        ({"asin": "B001", "unixReviewTime": 1}, r"reviews.json: line 2: field reviewerID is missing"),
        ({"reviewerID": "U", "asin": "NOPE", "unixReviewTime": 1}, r"reviews.json: line 2: field item_id: unknown item 'NOPE'"),
    ],
)
def test_amazon_bad_reviews(tmp_path, review, message):
    meta = write(tmp_path / "meta.json", META_2014)
    reviews = write(tmp_path / "reviews.json", jl({"reviewerID": "U", "asin": "B001", "unixReviewTime": 5}, review))
    with pytest.raises(DataContractError, match=message):
        import_amazon(reviews, meta, tmp_path / "out", unknown_items="fail")
    assert not (tmp_path / "out").exists()


def test_amazon_metadata_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    meta = write(tmp_path / "meta.json", [META_2014[0], f"__import__('os').system('touch {marker}')"])
    reviews = write(tmp_path / "reviews.json", REVIEWS[:1])
    with pytest.raises(DataContractError, match=r"meta.json: line 2: neither JSON nor a Python dict literal"):
        import_amazon(reviews, meta, tmp_path / "out")
    assert not marker.exists()


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(("\n".join(REVIEWS) + "\n").encode())
    (tmp_path / "reviews.json.gz").write_bytes(data[: len(data) // 2])
    meta = write(tmp_path / "meta.json", META_2014)
    with pytest.raises(DataContractError, match=r"reviews.json.gz: cannot read"):
        import_amazon(tmp_path / "reviews.json.gz", meta, tmp_path / "out")


# --- generic tables --------------------------------------------------------------------------------------

def test_csv_with_mapping_keeps_string_ids_and_splits_categories(tmp_path):
    cat = write(tmp_path / "cat.csv", ["sku,name,cats,cost", "007,Red Lipstick,Makeup|Lips,$3.50", "8,Blue,,"])
    inter = write(tmp_path / "events.csv", ["uid,sku,ts", "u1,007,2020-01-01", "u1,8,2020-01-02T10:00:00Z", "u2,9,2020-01-03"])
    summary = import_tables(cat, inter, tmp_path / "out", ["item_id=sku", "title=name", "categories=cats",
                                                            "price=cost", "user_id=uid", "timestamp=ts"])
    assert (summary.items, summary.users, summary.interactions, summary.dropped_unknown) == (2, 1, 2, 1)
    catalog, events = read_out(tmp_path / "out")
    assert catalog[0] | {} == {"item_id": "007", "title": "Red Lipstick", "description": None, "brand": None,
                               "categories": ["Makeup", "Lips"], "price": 3.5, "text": None}
    assert [e["item_id"] for e in events] == ["007", "8"]
    assert events[1]["timestamp"].isoformat() == "2020-01-02T10:00:00+00:00"


def test_parquet_and_jsonl_with_per_table_mapping_and_epoch_millis(tmp_path):
    pq.write_table(pa.table({"product": ["a", "b"], "title": ["A", "B"]}), tmp_path / "cat.parquet")
    inter = write(tmp_path / "events.jsonl", jl({"user": 1, "item": "b", "ms": 1_600_000_000_000},
                                                  {"user": 1, "item": "a", "ms": 1_600_000_001_000}))
    mapping = ["catalog.item_id=product", "interactions.item_id=item", "user_id=user", "timestamp=ms"]
    import_tables(tmp_path / "cat.parquet", inter, tmp_path / "out", mapping, timestamp_unit="ms")
    _, events = read_out(tmp_path / "out")
    assert [(e["user_id"], e["item_id"], e["timestamp"].timestamp()) for e in events] == [
        ("1", "b", 1_600_000_000.0), ("1", "a", 1_600_000_001.0)
    ]


def test_position_order_column_and_tsv(tmp_path):
    cat = write(tmp_path / "cat.tsv", ["item_id\ttitle", "a\tA", "b\tB"])
    inter = write(tmp_path / "ev.tsv", ["user_id\titem_id\tposition", "u\tb\t0", "u\ta\t1"])
    assert import_tables(cat, inter, tmp_path / "out").interactions == 2
    _, events = read_out(tmp_path / "out")
    assert [e["position"] for e in events] == [0, 1]


@pytest.mark.parametrize(
    "catalog_lines, event_lines, mapping, message",
    [
        (["item_id,title", "a,A"], ["uid,item_id,timestamp", "u,a,1"], [],
         r"events.csv: missing required column user_id \(found: item_id, timestamp\)"),
        (["item_id,title", "a,A"], ["uid,item_id,timestamp", "u,a,1"], ["user_id=customer"],
         r"events.csv: missing column 'customer' \(mapped to user_id\)"),
        (["item_id,title", "a,A", "a,B"], ["user_id,item_id,timestamp", "u,a,1"], [],
         r"cat.csv: line 3: field item_id: duplicated id 'a' \(first seen at line 2\)"),
        (["item_id,title", "a,A"], ["user_id,item_id,timestamp", "u,a,2020-01-01", "u,a,last tuesday"], [],
         r"events.csv: line 3: field timestamp: unparsable timestamp 'last tuesday'"),
        (["item_id,title", "a,A"], ["user_id,item_id", "u,a"], [],
         r"events.csv: needs a timestamp or a position column"),
        (["item_id,title", "a,A"], ["user_id,item_id,timestamp", "u,zz,1"], [],
         r"events.csv: line 2: field item_id: unknown item 'zz'"),
        (["item_id,price", "a,12", "b,a lot"], ["user_id,item_id,timestamp", "u,a,1"], [],
         r"cat.csv: line 3: field price: not a number: 'a lot'"),
        (["item_id,title"], ["user_id,item_id,timestamp", "u,a,1"], [], r"cat.csv: the file has no rows"),
    ],
)
def test_table_bad_input(tmp_path, catalog_lines, event_lines, mapping, message):
    cat = write(tmp_path / "cat.csv", catalog_lines)
    inter = write(tmp_path / "events.csv", event_lines)
    with pytest.raises(DataContractError, match=message):
        import_tables(cat, inter, tmp_path / "out", mapping, unknown_items="fail")
    assert not (tmp_path / "out").exists()


def test_table_invalid_json_line_and_unknown_format(tmp_path):
    cat = write(tmp_path / "cat.jsonl", ['{"item_id": "a"}', '{"item_id": "b"', '{"item_id": "c"}'])
    inter = write(tmp_path / "ev.jsonl", jl({"user_id": "u", "item_id": "a", "position": 0}))
    with pytest.raises(DataContractError, match=r"cat.jsonl: line 2: invalid JSON"):
        import_tables(cat, inter, tmp_path / "out")
    with pytest.raises(DataContractError, match=r"cat.xlsx: unknown table format"):
        import_tables(write(tmp_path / "cat.xlsx", ["x"]), inter, tmp_path / "out")


def test_parse_mapping():
    assert parse_mapping(["user_id=uid", "catalog.item_id=sku", "item_id=x"]) == {
        "catalog": {"item_id": "x"}, "interactions": {"user_id": "uid", "item_id": "x"}
    }
    with pytest.raises(ValueError, match="unknown field 'userid'"):
        parse_mapping(["userid=uid"])
    with pytest.raises(ValueError, match="expected FIELD=COLUMN"):
        parse_mapping(["user_id"])
    with pytest.raises(ValueError, match="'users' is not a table"):
        parse_mapping(["users.user_id=x"])


# --- CLI -------------------------------------------------------------------------------------------------

def test_cli_import_and_inspect(tmp_path, capsys):
    src = beauty_source(tmp_path, ["10 1 2 3", "11 3 9"])
    assert main(["data", "import", "beauty", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "imported 3 items, 2 users, 4 interactions" in capsys.readouterr().out
    assert main(["data", "inspect", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "users 2; interactions 4" in out and "item_id: string" in out
    code = main(["data", "import", "beauty", str(src), "--out", str(tmp_path / "o2"), "--set", "data.unknown_items=fail"])
    assert code == 1
    assert "sequences.txt: line 2: field item_id: unknown item '9'" in capsys.readouterr().err
    cat = write(tmp_path / "c.csv", ["sku", "a"])
    ev = write(tmp_path / "e.csv", ["uid,sku,t", "u,a,5"])
    assert main(["data", "import", "table", "--catalog", str(cat), "--interactions", str(ev), "--map", "item_id=sku",
                 "--map", "user_id=uid", "--map", "timestamp=t", "--out", str(tmp_path / "o3")]) == 0
    assert main(["data", "import", "table", "--catalog", str(cat), "--interactions", str(ev), "--map", "bogus=x",
                 "--out", str(tmp_path / "o4")]) == 1
    assert "unknown field 'bogus'" in capsys.readouterr().err
    meta = write(tmp_path / "meta.json.gz", META_2014, gz=True)
    reviews = write(tmp_path / "reviews.json", REVIEWS)
    assert main(["data", "import", "amazon", "--reviews", str(reviews), "--meta", str(meta), "--style", "2014",
                 "--out", str(tmp_path / "o5")]) == 0
    assert "imported 2 items, 2 users, 3 interactions" in capsys.readouterr().out


def test_invalid_utf8_in_a_parquet_table_is_refused_naming_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from unisem.data.contract import DataContractError, read_catalog

    offsets = pa.py_buffer(bytes([0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0]))
    titles = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okok\xff\xfeb")])
    path = tmp_path / "catalog.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "title": titles}), path)
    with pytest.raises(DataContractError, match=r"catalog.parquet: row 2: field title: the text is not valid UTF-8"):
        read_catalog(path)
