"""The item text: one template reading, rendered in Python (feature job) and as a Spark column (quality gate)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from unisem.data.contract import CATALOG_SCHEMA
from unisem.text.template import TemplateError, build_item_text, parse_template, spark_item_text

PAPER = "{title};{price};{brand};{categories}"
PROSE = "Item: {title} by {brand} ({price}) [{categories}] - {description}"


def test_missing_parts_take_their_separator_with_them():
    row = {"title": " Rose Oil ", "price": None, "brand": "Acme", "categories": ["Beauty", " ", None, "Skin Care "]}
    assert build_item_text(row, PAPER) == "Rose Oil;Acme;Beauty;Skin Care"
    assert build_item_text({"title": "T", "price": 5.0}, PAPER) == "T;5.0"
    assert build_item_text({"title": "T", "brand": "B"}, PROSE) == "Item: T by B"
    assert build_item_text({"title": "", "brand": None}, PAPER) == ""
    assert build_item_text({"title": "T", "text": "  ready made \n"}, PAPER) == "ready made"


def test_parse_template_reads_separators_and_the_list_separator():
    t = parse_template(PROSE)
    assert t.prefix == "Item: " and t.fields == ("title", "brand", "price", "categories", "description")
    assert t.seps == (" by ", " (", ") [", "] - ", "") and t.list_sep == " ("
    assert parse_template("{title} {brand}").list_sep == ", "
    with pytest.raises(TemplateError, match="unknown field 'colour'"):
        parse_template("{title};{colour}")


# Awkward rows: Unicode and control whitespace at the ends, empty and null list entries, a blank ready-made
# text, NaN and infinite prices, and prices where Java and Python lay out digits differently.
AWKWARD = [
    dict(item_id="a", title="  Rose\tOil \n", brand="\u00a0Acme\u2003", categories=["Beauty", "  ", None, " Skin Care "],
         price=12.5),
    dict(item_id="b", description="desc", categories=[], text="   "),
    dict(item_id="c", title="T", brand="B", price=float("nan")),
    dict(item_id="d", title="", brand=""),
    dict(item_id="e", title="x", categories=["a"], price=1e-5, text=" ready \x1c"),
    dict(item_id="f", title="x\x1c", price=123456789.0),
] + [
    dict(item_id=f"p{i}", title="t", price=p)
    for i, p in enumerate([0.0, -0.0, 0.1, 19.99, 0.00012, 0.0001, 0.001, 12345678.5, 1e7, 1.5e15,
                           9999999999999998.0, 1e16, 2.5e16, 1e100, -3e-7, float("inf"), float("-inf"), 1e-300,
                           123456789012.345, 0.000123456789012345678])
]


@pytest.mark.spark
def test_the_gate_text_is_the_feature_job_text_to_the_letter(spark):
    from unisem.data.features import _texts_in_pandas
    from unisem.data.inputs import CATALOG_COLUMNS

    table = pa.Table.from_pylist(AWKWARD, schema=CATALOG_SCHEMA.set(0, pa.field("item_id", pa.string())))
    df = spark.createDataFrame(table.to_pandas(), schema=", ".join(f"{n} {t}" for n, t in CATALOG_COLUMNS.items()))
    for template in (PAPER, PROSE, "{categories}|{item_id}"):
        feature_job = {r["item_id"]: r["text"] for r in df.mapInPandas(
            _texts_in_pandas(template), "item_id string, text string").collect()}
        gate = {r["item_id"]: r["text"] for r in df.select("item_id", spark_item_text(template).alias("text")).collect()}
        python = {row["item_id"]: build_item_text(row, template) for row in AWKWARD}
        assert gate == feature_job == python, template
    # Spot checks by hand, so agreement cannot hide a shared mistake.
    python = {row["item_id"]: build_item_text(row, PROSE) for row in AWKWARD}
    assert python["a"] == "Item: Rose\tOil by Acme (12.5) [Beauty (Skin Care"
    assert python["e"] == "ready"
    assert [python[f"p{i}"] for i in (4, 8, 11, 13, 15)] == [
        "Item: t (0.00012", "Item: t (10000000.0", "Item: t (1e+16", "Item: t (1e+100", "Item: t (inf"]
