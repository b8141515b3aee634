"""A catalog path with YAML-special characters (`` #`` and ``: ``) reaches Spark as written, through the DAG
params (typed values of the run spec) and through ``--set`` (``unisem stage``), with the real gate on Spark.

Read as YAML override text, ``shop #2/...`` was ``shop`` and ``a: b/...`` a mapping."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unisem.config import load_config


@pytest.mark.spark
@pytest.mark.slow
def test_a_catalog_path_with_hash_and_colon_reaches_spark_verbatim(spark, tmp_path, capsys):
    from unisem.cli import main
    from unisem.data.demo import ensure_demo_data
    from unisem.pipeline import stages
    from unisem.pipeline.spec import spec_from_params

    demo = Path(ensure_demo_data(load_config(None, ["data.demo.items=60", "data.demo.users=40"]).data.demo,
                                 tmp_path / "scratch"))
    folder = tmp_path / "shop #2" / "a: b"
    folder.mkdir(parents=True)
    cat, log = folder / "catalog.parquet", folder / "interactions.parquet"
    shutil.copy(demo / "catalog.parquet", cat)
    shutil.copy(demo / "interactions.parquet", log)
    (tmp_path / "shop").mkdir()  # what the YAML reading of the path named: it exists, and must not be used
    home = tmp_path / "home"

    spec = spec_from_params({"catalog": str(cat), "interactions": str(log),
                             "overrides": ["orchestration.spark_master=local[1]"]}, "2026-01-02", home=home)
    out = stages.validate(spec)
    verdict = json.loads(Path(out["verdict_path"]).read_text())
    assert out["catalog"] == str(cat) and out["interactions"] == str(log)
    assert verdict["inputs"] == {"catalog": str(cat), "interactions": str(log)}
    assert verdict["measures"]["catalog_rows"] == 60  # Spark read the file at that path

    capsys.readouterr()
    assert main(["stage", "validate", "--run-id", "by-set", "--home", str(home),
                 "--set", f"data.catalog={cat}", "--set", f"data.interactions={log}",
                 "--set", "orchestration.spark_master=local[1]"]) == 0
    again = json.loads((home / "runs" / "by-set" / "quality" / "verdict.json").read_text())
    assert again["inputs"] == {"catalog": str(cat), "interactions": str(log)}
    assert again["measures"]["catalog_rows"] == 60
