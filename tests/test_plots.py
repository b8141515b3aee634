"""Evaluation plots are valid PNG files, drawn headless, and refuse empty input."""
from __future__ import annotations

import numpy as np
import pytest

from unisem.evaluate.plots import codebook_usage_plot, curve_groups, training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_training_curves_png(tmp_path):
    history = [
        {"epoch": e, "loss": 3.0 / e, "loss_rec": 2.0 / e, "valid/full/NDCG@10": 0.01 * e, "MRR": 0.02 * e,
         "seconds": 1.5, "lr": 1e-3}
        for e in range(1, 6)
    ]
    assert curve_groups(history) == (["loss", "loss_rec"], ["valid/full/NDCG@10", "MRR"])
    out = training_curves(history, tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert not list(out.parent.glob(".*tmp*")), "no temporary file is left behind"
    with pytest.raises(ValueError, match="history is empty"):
        training_curves([], tmp_path / "none.png")
    with pytest.raises(ValueError, match="no loss or metric"):
        training_curves([{"epoch": 1, "seconds": 2.0}], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_codebook_usage_png(tmp_path):
    codes = np.random.default_rng(0).integers(0, 16, size=(200, 3))
    out = codebook_usage_plot(codes, 16, tmp_path / "usage.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
