"""The registered model loads where this repository is not: a fresh virtualenv built from nothing but the
model's own ``requirements.txt`` (pip reads the machine's package index; torch is the CPU wheel there),
loading the model from the registry and predicting exactly what the training process predicts.

Slow (a few minutes: pip installs MLflow and torch into the new environment).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from synthetic_sequences import TINY_MODEL, chain_dataset

from unisem.config import load_config
from unisem.data.dataset import write_features
from unisem.home import RunLayout

pytestmark = pytest.mark.slow

HISTORIES = [["i0", "i1", "i2"], ["i7", "nope"], [], ["i3", "i9", "i15"]]

PREDICT = """
import json, sys
import mlflow, pandas as pd
import unisem
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/unisem@challenger")
out = model.predict(pd.DataFrame({"history": json.loads(sys.argv[2])}), params={"k": 5})
print("RESULT" + json.dumps({"unisem_file": unisem.__file__, "ids": [list(x) for x in out["item_ids"]],
                             "scores": [list(map(float, x)) for x in out["scores"]], "source": list(out["source"]),
                             "unknown": [list(x) for x in out["unknown_ids"]]}))
"""


def test_the_model_loads_and_predicts_in_a_virtualenv_built_from_its_own_requirements(tmp_path, monkeypatch):
    from unisem.registry.pyfunc_model import load_serving
    from unisem.registry.registration import log_and_register
    from unisem.registry.tracking import tracking_uri
    from unisem.train import fit

    home = tmp_path / "home"
    monkeypatch.setenv("UNISEM_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data, text = chain_dataset(items=40, users=120, seed=3)
    write_features(data, tmp_path / "features")
    (tmp_path / "embeddings").mkdir()
    save_file({"embeddings": text}, str(tmp_path / "embeddings" / "item_embeddings.safetensors"))
    cfg = load_config(None, [*TINY_MODEL, "evaluation.ks=[10]", "training.max_epochs=2", "training.lr=0.01"])
    model = fit(cfg, data, text, tmp_path / "train")
    layout = RunLayout.for_run("portable", home)
    log_and_register(cfg, model, "portable", record_dir=layout.registry, features_dir=tmp_path / "features",
                     embeddings_dir=tmp_path / "embeddings")

    # What the training process itself answers (the pyfunc in this interpreter, where unisem is the repository's).
    here = load_serving("models:/unisem@challenger").predict(None, pd.DataFrame({"history": HISTORIES}), {"k": 5})

    model_dir = Path(mlflow.artifacts.download_artifacts("models:/unisem@challenger", dst_path=str(tmp_path / "m")))
    requirements = (model_dir / "requirements.txt").read_text().split()
    wheels = [r for r in requirements if r.startswith("code/unisem-")]
    assert len(wheels) == 1 and (model_dir / wheels[0]).is_file(), requirements
    assert "torch==2.13.0" in requirements and any(r.startswith("mlflow==") for r in requirements)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UNISEM_HOME")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], cwd=model_dir,
                             env=env, capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-4000:]

    proc = subprocess.run([str(py), "-c", PREDICT, tracking_uri(cfg), json.dumps(HISTORIES)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    there = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert there["unisem_file"].startswith(str(venv)), there["unisem_file"]  # not this repository's code
    assert there["ids"] == [list(x) for x in here["item_ids"]]
    assert there["source"] == list(here["source"]) == ["model", "model", "fallback", "model"]
    assert there["unknown"] == [list(x) for x in here["unknown_ids"]] == [[], ["nope"], [], []]
    for a, b in zip(there["scores"], here["scores"]):
        np.testing.assert_allclose(a, list(b), rtol=1e-6)
