"""The unisem model as an MLflow pyfunc: a file-defined PythonModel over the model folder, checked by sha256.

Logged "from code" (``pyfunc_definition.py`` names the class), so loading never unpickles anything: the
PythonModel is rebuilt from our source and the model is read from safetensors and JSON by
``unisem.model.load_model``. Every artifact file's sha256 is recorded in the MLmodel's ``model_config`` at
logging time and checked before anything is read, so a replaced or edited file is refused by name.

``predict`` input: a DataFrame with a column ``history`` (a list of item ids per user, oldest first).
Params: ``k`` (default 10) and ``exclude_seen`` (default true). Output: columns ``item_ids`` and ``scores``
(lists, best first), ``source`` (``model``, or ``fallback`` when no known item is left in the history: the
training data's most popular items) and ``unknown_ids`` (the history's ids the model does not know, dropped);
the rules are ``unisem.registry.answers``. Items of a newer catalog (text only) are added with ``add_items``
on the unwrapped model (``loaded.unwrap_python_model().add_items(ids, text_embeddings)``) and are then
scored through their semantic tokens.

Portable: the logged model carries a wheel of the unisem code that logged it (``unisem.registry.wheel``)
among its ``code_paths``, and its ``requirements.txt`` names that wheel plus the serving dependencies pinned
to the versions of the logging process, so an environment built from the model alone can load it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:  # the base class only; unisem.registry imports without MLflow for the pure parts
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a pinned dependency
    PythonModel = object  # type: ignore[misc,assignment]

from unisem.registry.answers import answer, read_popularity, training_popularity, write_popularity
from unisem.registry.versions import file_sha256

MODEL_ARTIFACT = "model"
MANIFEST_KEY = "artifact_sha256"
WHEEL_KEY = "unisem_wheel"
DEFINITION_FILE = Path(__file__).with_name("pyfunc_definition.py")
ITEM_TEXTS_FILE = "item_texts.json"
ENCODER_FILE = "text_encoder.json"
ITEM_INDEX_FILE = "item_index.faiss"  # with item_index.faiss.json (its probe count) beside it
# Users whose exact top-10 the index's probe count is calibrated against (training histories, seeded sample).
INDEX_CALIBRATION_USERS = 2000
DEFAULT_K = 10
# What loading and predicting import (the model code, MLflow's pyfunc, the Parquet features reader).
SERVING_PACKAGES = ("torch", "numpy", "pandas", "safetensors", "pyarrow", "PyYAML", "mlflow")


class ArtifactIntegrityError(ValueError):
    """A model artifact differs from what was logged (edited, replaced, missing or added)."""


def build_manifest(folder: str | Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by its POSIX path relative to the folder."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def verify_manifest(folder: str | Path, manifest: dict[str, str]) -> None:
    """Raise ``ArtifactIntegrityError`` naming the first file that does not match ``manifest``."""
    folder = Path(folder)
    if not manifest:
        raise ArtifactIntegrityError(f"{folder}: the model has no artifact manifest; refusing to load it unchecked")
    actual = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name in sorted(manifest):
        path = folder / name
        if name not in actual:
            raise ArtifactIntegrityError(f"{path}: model artifact is missing")
        digest = file_sha256(path)
        if digest != manifest[name]:
            raise ArtifactIntegrityError(
                f"{path}: model artifact was modified after logging (sha256 {digest}, expected {manifest[name]})"
            )
    extra = sorted(actual - set(manifest))
    if extra:
        raise ArtifactIntegrityError(f"{folder / extra[0]}: unexpected file in the model artifacts (not in the manifest)")


def stage_model_folder(
    model_dir: str | Path, out_dir: str | Path, item_texts: list[str] | None = None, encoder_meta: dict | None = None,
    features=None, features_basis: str = "", index_min_items: int = 0, index_target_recall: float = 0.95,
) -> Path:
    """Copy the model folder to ``out_dir`` with the item texts and the text-encoder description beside it.

    The texts make the registered model self-describing (what each item was embedded from) and the
    encoder description says which encoder must embed a new item's text for ``add_items``. With the
    training ``features`` (a SequenceDataset) the popularity of its training histories is staged too: the
    fallback answer for a history the model cannot read (``unisem.registry.answers``); and, for a catalog
    of at least ``index_min_items`` items (0 = never), the approximate item index the served model answers
    from, its probe count calibrated on training users to ``index_target_recall`` (``stage_item_index``).
    """
    out = Path(out_dir)
    shutil.copytree(model_dir, out)
    if item_texts is not None:
        (out / ITEM_TEXTS_FILE).write_text(json.dumps(list(item_texts)))
    if encoder_meta is not None:
        (out / ENCODER_FILE).write_text(json.dumps(encoder_meta, indent=2, sort_keys=True))
    if features is not None:
        write_popularity(training_popularity(features), out, f"training histories of {features_basis}".strip())
        if index_min_items and features.num_items >= index_min_items:
            stage_item_index(out, features, index_target_recall)
    return out


def stage_item_index(folder: Path, features, target_recall: float) -> float:
    """Build the item index of the model in ``folder`` into it; returns the recall@10 its probes reached.

    Built here, at registration, so every process that serves the version loads the same index (and its
    sha256 is in the manifest) instead of each building its own at start-up, minutes at a million items.
    """
    from unisem.data.dataset import split_inputs
    from unisem.model import load_model
    from unisem.model.index import build_index, calibrate

    rec = load_model(folder)
    histories, _ = split_inputs(features, "valid")
    rows = np.random.default_rng(0).permutation(len(histories))[:INDEX_CALIBRATION_USERS]
    histories = [histories[i] for i in rows if len(histories[i])]
    index = build_index(rec.table)
    recall = calibrate(index, rec, histories, target_recall=target_recall) if histories else float("nan")
    index.save(folder / ITEM_INDEX_FILE)
    return recall


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, float) and np.isnan(value):
        return []
    if isinstance(value, str):
        raise ValueError(f"history must be a list of item ids, got the string {value!r}")
    return [str(v) for v in list(value)]


class UnisemPyfunc(PythonModel):
    """MLflow PythonModel over ``unisem.model.inference_by_id.ServingModel``."""

    def load_context(self, context) -> None:
        from unisem.model import load_model
        from unisem.model.inference_by_id import ServingModel

        folder = Path(context.artifacts[MODEL_ARTIFACT])
        verify_manifest(folder, (context.model_config or {}).get(MANIFEST_KEY, {}))
        self.model_dir = folder
        self.serving = ServingModel(load_model(folder))
        if (folder / ITEM_INDEX_FILE).exists():
            from unisem.model.index import ItemIndex

            self.serving.use_index(ItemIndex.load(folder / ITEM_INDEX_FILE))
        self.popularity = read_popularity(folder)

    def add_items(self, item_ids, text_embeddings) -> int:
        """Items of a newer catalog (text embedding from the same encoder, see text_encoder.json)."""
        return self.serving.add_items(item_ids, text_embeddings)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if "history" not in model_input.columns:
            raise ValueError(f"input needs a column 'history' (lists of item ids); got {list(model_input.columns)}")
        k = int(params.get("k", DEFAULT_K))
        exclude_seen = bool(params.get("exclude_seen", True))
        histories = [_as_list(h) for h in model_input["history"]]
        return answers_frame(answer(self.serving, self.popularity, histories, k=k, exclude_seen=exclude_seen))


def answers_frame(rows) -> pd.DataFrame:
    return pd.DataFrame({"item_ids": [a.item_ids for a in rows], "scores": [a.scores for a in rows],
                         "source": [a.source for a in rows], "unknown_ids": [a.unknown_ids for a in rows]})


def serving_requirements(with_index: bool = False) -> list[str]:
    """``name==version`` of the serving dependencies as installed here (torch without its ``+cpu``/``+cuXXX``
    label, so the serving machine's own build of the same version matches); faiss-cpu when the model
    carries an item index."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for name in (*SERVING_PACKAGES, *(("faiss-cpu",) if with_index else ())):
        try:
            reqs.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:  # pragma: no cover - every one is a pinned dependency
            raise RuntimeError(f"{name} is not installed: the model's requirements cannot be pinned") from None
    return reqs


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    inputs = Schema([ColSpec(Array(DataType.string), "history")])
    outputs = Schema([ColSpec(Array(DataType.string), "item_ids"), ColSpec(Array(DataType.double), "scores"),
                      ColSpec(DataType.string, "source"), ColSpec(Array(DataType.string), "unknown_ids")])
    params = ParamSchema([ParamSpec("k", DataType.long, DEFAULT_K), ParamSpec("exclude_seen", DataType.boolean, True)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def log_pyfunc(model_dir: str | Path, input_example: pd.DataFrame | None = None, name: str = "model"):
    """Log ``model_dir`` (a staged model folder) as a pyfunc model in the active run; returns ModelInfo.

    The wheel of the running unisem code goes into the model's ``code/`` folder and ``requirements.txt``
    names it by that relative path (MLflow installs a model's requirements from inside the model folder),
    next to the pinned serving dependencies. The signature is written out rather than inferred, so it
    holds the list types even for an example whose ``unknown_ids`` are all empty.
    """
    import tempfile

    import mlflow

    from unisem.model.storage import ITEMS
    from unisem.registry.wheel import build_wheel

    model_dir = Path(model_dir)
    manifest = build_manifest(model_dir)
    if input_example is None:  # three of the model's item ids, from its items file (no need to load the model)
        ids = json.loads((model_dir / ITEMS).read_text())["item_ids"][:3]
        input_example = pd.DataFrame({"history": [[str(i) for i in ids]]})
    pins = serving_requirements(with_index=(model_dir / ITEM_INDEX_FILE).exists())
    with tempfile.TemporaryDirectory(prefix="unisem-wheel-") as tmp:
        wheel = build_wheel(tmp, pins)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(DEFINITION_FILE),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            model_config={MANIFEST_KEY: manifest, WHEEL_KEY: wheel.name},
            code_paths=[str(wheel)],
            signature=_signature(),
            input_example=input_example,
            pip_requirements=[*pins, f"code/{wheel.name}"],
        )


def load_serving(model_uri: str):
    """The ``UnisemPyfunc`` behind a registry URI (``models:/unisem@champion``) or a logged model URI."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
