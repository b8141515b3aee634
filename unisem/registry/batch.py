"""Top-K for every user of the features with the model that holds ``champion``: the nightly batch a website
reads instead of calling the model per page view.

Scored through Spark (``mapInPandas`` over the registered pyfunc), so the same job runs in-process on
``local[*]`` and on a cluster through ``spark-submit jobs/recommend.py``. Each Python worker loads the model
once from a local copy of the registered version (on a cluster that copy must be on the shared filesystem
every stage already reads) and answers exactly as the REST endpoint does (``unisem.registry.answers``).

The alias is resolved to a version once, before scoring, so a promotion that happens mid-job cannot mix two
models in one output. Output (Parquet): ``user_id, rank, item_id, score, model_version, run_id, source``
(``run_id`` = the pipeline run that wrote the rows; ``source`` = model | fallback), one row per
(user, rank), plus ``_manifest.json`` with the counts; written to a temporary folder and renamed into place,
then copied the same way to the published location.
"""
from __future__ import annotations

import functools
import json
import math
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import pandas as pd

from unisem.atomic import atomic_dir
from unisem.config.schema import UnisemConfig
from unisem.registry.registration import CHAMPION

BATCH_COLUMNS = ("user_id", "rank", "item_id", "score", "model_version", "run_id", "source")
SPARK_SCHEMA = ("user_id string, rank int, item_id string, score double, model_version string, run_id string, "
                "source string")
MANIFEST_FILE = "_manifest.json"  # "_" first: Spark and pyarrow skip it when reading the folder as a table


class ChampionModel(NamedTuple):
    name: str
    version: str
    model_uri: str  # models:/<name>/<version>: pinned, not the alias
    mlflow_run_id: str


class BatchError(RuntimeError):
    """The batch cannot run: no model holds the alias, or the features are unusable; the message says which."""


def resolve_alias(cfg: UnisemConfig, alias: str = CHAMPION) -> ChampionModel:
    import mlflow

    from unisem.registry.tracking import configure, store_client

    uri = configure(cfg)
    name = cfg.registry.model_name
    client = store_client(uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise BatchError(f"no version of model {name!r} holds alias {alias!r} in the registry at {uri}") from exc
    return ChampionModel(name, str(mv.version), f"models:/{name}/{mv.version}", str(mv.run_id))


def user_histories(data) -> pd.DataFrame:
    """``user_id, history`` for every user: the whole known history (training part, then the validation and
    test items), oldest first — what the website's user has done up to tonight."""
    ids = data.item_ids
    histories = [[ids[i - 1] for i in (*h.tolist(), int(v), int(t))]
                 for h, v, t in zip(data.histories, data.valid_items, data.test_items)]
    return pd.DataFrame({"user_id": list(data.user_ids), "history": histories})


def answer_rows(user_ids: Sequence[str], answers: Sequence[Any], model_version: str, run_id: str) -> pd.DataFrame:
    """One row per (user, rank), ranks from 1, in the order of ``answers`` (``unisem.registry.answers.Answer``
    or a frame row with the same fields)."""
    cols: dict[str, list] = {c: [] for c in BATCH_COLUMNS}
    for user, a in zip(user_ids, answers):
        for rank, (item, score) in enumerate(zip(a.item_ids, a.scores), start=1):
            cols["user_id"].append(str(user))
            cols["rank"].append(rank)
            cols["item_id"].append(str(item))
            cols["score"].append(float(score))
            cols["model_version"].append(model_version)
            cols["run_id"].append(run_id)
            cols["source"].append(a.source)
    frame = pd.DataFrame(cols)
    return frame.astype({"rank": "int32", "score": "float64"})


_LOADED: dict[str, Any] = {}  # model path -> UnisemPyfunc, once per Python worker process


def _pyfunc(model_path: str):
    if model_path not in _LOADED:
        import mlflow

        _LOADED[model_path] = mlflow.pyfunc.load_model(model_path).unwrap_python_model()
    return _LOADED[model_path]


def score_partition(batches: Iterator[pd.DataFrame], model_path: str, k: int, chunk_users: int,
                    model_version: str, run_id: str) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` body: frames of ``user_id, history`` -> frames of ``BATCH_COLUMNS``."""
    from unisem.registry.answers import answer

    model = _pyfunc(model_path)
    for frame in batches:
        for start in range(0, len(frame), chunk_users):
            part = frame.iloc[start:start + chunk_users]
            histories = [[str(i) for i in h] for h in part["history"]]
            rows = answer(model.serving, model.popularity, histories, k=k, exclude_seen=True)
            yield answer_rows(part["user_id"].tolist(), rows, model_version, run_id)


def recommend_all(cfg: UnisemConfig, features_dir: str | Path, out_dir: str | Path, run_id: str,
                  published_dir: str | Path | None = None, master: str | None = None) -> dict[str, Any]:
    """Score every user of ``features_dir`` with the champion, write ``out_dir`` (and ``published_dir``)."""
    import mlflow
    import pyarrow.parquet as pq

    from unisem.data.dataset import load_features
    from unisem.data.spark import resolve_master, spark_session

    features_dir, out_dir = Path(features_dir), Path(out_dir)
    data = load_features(features_dir)
    users = user_histories(data)
    if users.empty:
        raise BatchError(f"{features_dir}: no users to recommend for")
    champ = resolve_alias(cfg)
    k, chunk = cfg.serving.batch_k, cfg.serving.batch_chunk_users

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model_copy = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.model-", dir=out_dir.parent))
    try:
        local_model = mlflow.artifacts.download_artifacts(artifact_uri=champ.model_uri, dst_path=str(model_copy))
        spark = spark_session(resolve_master(master, cfg.orchestration.spark_master), app="unisem-recommend")
        partitions = max(1, min(spark.sparkContext.defaultParallelism, math.ceil(len(users) / chunk)))
        frame = spark.createDataFrame(users, schema="user_id string, history array<string>").repartition(partitions)
        body = functools.partial(score_partition, model_path=str(local_model), k=k, chunk_users=chunk,
                                 model_version=champ.version, run_id=run_id)
        with atomic_dir(out_dir) as tmp:
            frame.mapInPandas(body, schema=SPARK_SCHEMA).write.mode("overwrite").parquet(str(tmp))
            table = pq.read_table(tmp, columns=["user_id", "source"])
            sources = table.to_pandas().drop_duplicates("user_id")["source"].value_counts().to_dict()
            manifest = {
                "run_id": run_id, "model_name": champ.name, "model_version": champ.version,
                "model_uri": champ.model_uri, "mlflow_run_id": champ.mlflow_run_id, "k": k,
                "users": int(len(users)), "rows": int(table.num_rows),
                "users_written": _distinct_users(table), "fallback_users": int(sources.get("fallback", 0)),
                "columns": list(BATCH_COLUMNS), "features": str(features_dir),
                "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    finally:
        shutil.rmtree(model_copy, ignore_errors=True)
    if published_dir is not None:
        with atomic_dir(published_dir) as tmp:
            shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
        manifest["published"] = str(published_dir)
    manifest["path"] = str(out_dir)
    return manifest


def _distinct_users(table) -> int:
    import pyarrow.compute as pc

    return int(len(pc.unique(table["user_id"])))
