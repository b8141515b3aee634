"""PNG plots of training and of the semantic IDs, for the run's evaluation folder and MLflow.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend state), so plotting
works headless inside Airflow or Ray workers and never opens a window. Files are written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unisem.atomic import atomic_file


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    with atomic_file(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return out_path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def curve_groups(history: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The numeric keys of a per-epoch history, split into losses and ranking metrics (others are skipped)."""
    keys: list[str] = []
    for row in history:
        keys.extend(k for k, v in row.items() if k not in keys and k != "epoch" and _is_number(v))
    losses = [k for k in keys if "loss" in k.lower()]
    metrics = [k for k in keys if k not in losses and ("@" in k or k.split("/")[-1] == "MRR")]
    return losses, metrics


def training_curves(history: Sequence[Mapping[str, Any]], out_path: str | Path, title: str = "training") -> Path:
    """Loss and validation-metric curves from a per-epoch list of dicts (``epoch`` is the x axis when given).

    Keys containing "loss" go to the left panel, ranking metrics (``...@K``, ``MRR``) to the right one.
    """
    if not history:
        raise ValueError("training_curves: the history is empty (no epoch to plot)")
    losses, metrics = curve_groups(history)
    if not losses and not metrics:
        raise ValueError(f"training_curves: no loss or metric values in the history keys {sorted(history[0])}")
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    panels = [(name, keys) for name, keys in (("loss", losses), ("validation metric", metrics)) if keys]
    fig = _figure(6.0 * len(panels), 4.0)
    for ax, (ylabel, keys) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for key in keys:
            ys = [float(row[key]) if _is_number(row.get(key)) else math.nan for row in history]
            ax.plot(epochs, ys, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, out_path)


def codebook_usage_plot(codes: np.ndarray, codebook_size: int, out_path: str | Path) -> Path:
    """Left: share of codewords used per level. Right: codeword frequency per level, most used first.

    A flat right-hand curve means the level spreads items evenly; a steep one means a few codewords carry
    most items (collapse), which the usage share alone can hide.
    """
    from unisem.evaluate.diagnostics import codebook_usage

    codes = np.asarray(codes)
    usage = codebook_usage(codes, codebook_size)
    levels = np.arange(1, len(usage) + 1)
    fig = _figure(11.0, 4.0)
    left, right = fig.subplots(1, 2)
    left.bar(levels, usage, color="tab:blue")
    for x, u in zip(levels, usage):
        left.text(x, u, f"{u:.0%}", ha="center", va="bottom", fontsize="small")
    left.set_ylim(0, 1.1)
    left.set_xticks(levels)
    left.set_xlabel("level")
    left.set_ylabel(f"share of the {codebook_size} codewords used")
    for level in range(codes.shape[1]):
        freq = np.sort(np.bincount(codes[:, level].astype(np.int64), minlength=codebook_size))[::-1]
        right.plot(np.arange(1, codebook_size + 1), freq, label=f"level {level + 1}")
    right.set_yscale("symlog", linthresh=1)
    right.set_xlabel("codeword (most used first)")
    right.set_ylabel("items")
    right.legend(fontsize="small")
    fig.suptitle(f"codebook usage ({len(codes)} items)")
    return _save(fig, out_path)
