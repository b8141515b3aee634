"""Evaluate a saved model folder on a features folder: both protocols, slices and diagnostics -> metrics.json.

This is the pipeline's evaluate stage and ``unisem evaluate``. It reads only files (the model folder of
``unisem.model`` and the features folder of ``unisem.data.dataset``), so a model can be re-evaluated at any
time, e.g. the champion on today's data when deciding a promotion. ``metrics.json`` is
``EvaluationReport.to_dict()`` (split, users, protocols, metrics, slices) plus a ``diagnostics`` section.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unisem.atomic import write_text_atomic

METRICS_FILE = "metrics.json"
CODEBOOK_PLOT = "codebook_usage.png"
TRAINING_PLOT = "training_curves.png"
SEMANTIC_ID_TABLE = "semantic_ids.parquet"


def check_same_catalog(model_item_ids: tuple[str, ...], data_item_ids: tuple[str, ...], model_dir: Path,
                       features_dir: Path) -> None:
    """Item indices are positions in the vocabulary, so a model only scores a features folder built on the
    same item vocabulary; anything else would silently rank the wrong items."""
    if tuple(model_item_ids) == tuple(data_item_ids):
        return
    if len(model_item_ids) != len(data_item_ids):
        raise ValueError(
            f"{model_dir} was trained on {len(model_item_ids)} items but {features_dir} has {len(data_item_ids)}; "
            "evaluate a model on features built from the same catalog"
        )
    first = next(i for i, (a, b) in enumerate(zip(model_item_ids, data_item_ids)) if a != b)
    raise ValueError(
        f"item index {first + 1} is {model_item_ids[first]!r} in {model_dir} but {data_item_ids[first]!r} in "
        f"{features_dir}; evaluate a model on features built from the same catalog"
    )


def model_diagnostics(model, num_items: int) -> dict[str, Any]:
    """Embedding-parameter count for the model's variant, and codebook usage / collisions of its semantic IDs."""
    from unisem.evaluate.diagnostics import codebook_usage, collision_rate, embedding_params_for, item_codes

    mcfg = model.config
    params = embedding_params_for(mcfg, num_items)
    out: dict[str, Any] = {
        "variant": mcfg.model.variant,
        "embedding_params": params.params,
        "id_only_embedding_params": params.id_only_params,
        "embedding_param_reduction": params.reduction,
    }
    if getattr(model, "semantic_ids", None) is not None:
        codes = item_codes(np.asarray(model.semantic_ids))
        out.update(
            {
                "levels": int(codes.shape[1]),
                "codebook_size": mcfg.quantizer.codebook_size,
                "distance": mcfg.quantizer.distance,
                "codebook_usage": codebook_usage(codes, mcfg.quantizer.codebook_size),
                "collision_rate": collision_rate(codes),
            }
        )
    return out


def popularity_baseline(data, cfg, split: str, max_len: int, batch_size: int = 512) -> dict[str, dict[str, float]]:
    """Protocol tables of the most-popular ranking (training-history counts, the same for every user).

    Ranked by the same code as the model (seen items excluded, ties against the target), so the two are
    comparable number for number; cheap, since the scores are one row broadcast over the batch.
    """
    import torch

    from unisem.evaluate.protocols import evaluate
    from unisem.evaluate.slices import item_popularity

    counts = torch.from_numpy(item_popularity(data).astype(np.float32))

    def score(histories: torch.Tensor) -> torch.Tensor:
        return counts.to(histories.device).unsqueeze(0).expand(histories.shape[0], -1)

    report = evaluate(score, data, cfg.evaluation, split=split, max_len=max_len, batch_size=batch_size, slices=False)
    return report.to_dict()["protocols"]


def evaluate_model_dir(
    model_dir: str | Path,
    features_dir: str | Path,
    cfg,
    split: str = "test",
    out_dir: str | Path | None = None,
    batch_size: int = 512,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate the model in ``model_dir`` on ``features_dir`` with ``cfg.evaluation``; return the report dict.

    With ``out_dir``, writes ``metrics.json`` (atomically) and, for models with semantic IDs, the
    semantic-ID table (Parquet) and a codebook-usage plot, and with the training ``history`` (per-epoch dicts,
    ``TrainResult.history``) the training curves. The model reads its last ``max_seq_len`` items
    as configured when it was trained (its own config), while the protocols follow ``cfg.evaluation``.
    """
    from unisem.config import to_dict
    from unisem.data.dataset import load_features
    from unisem.evaluate.protocols import evaluate
    from unisem.model import load_model

    model_dir, features_dir = Path(model_dir), Path(features_dir)
    started = time.perf_counter()
    model = load_model(model_dir)
    data = load_features(features_dir)
    check_same_catalog(model.item_ids, data.item_ids, model_dir, features_dir)
    report = evaluate(
        model.scorer(), data, cfg.evaluation, split=split, max_len=model.config.data.max_seq_len, batch_size=batch_size
    )
    result = report.to_dict()
    result.update(
        {
            # What a reader compares the model with first: the same protocols scoring by popularity alone.
            "baselines": {"popularity": popularity_baseline(data, cfg, split, model.config.data.max_seq_len, batch_size)},
            "items": data.num_items,
            "diagnostics": model_diagnostics(model, data.num_items),
            "evaluation_config": to_dict(cfg.evaluation),
            "model_dir": str(model_dir),
            "features_dir": str(features_dir),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if out_dir is not None:
        write_outputs(result, model, data.item_ids, Path(out_dir), history)
    return result


def write_outputs(
    result: dict[str, Any],
    model,
    item_ids: tuple[str, ...],
    out_dir: Path,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """metrics.json, the semantic-ID table and codebook plot (semantic models), training curves; each atomic."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if history:
        from unisem.evaluate.plots import training_curves

        variant = (result.get("diagnostics") or {}).get("variant", "")
        training_curves(history, out_dir / TRAINING_PLOT, title=f"training ({variant})")
    if getattr(model, "semantic_ids", None) is not None:
        import pyarrow.parquet as pq

        from unisem.atomic import atomic_file
        from unisem.evaluate.diagnostics import item_codes, semantic_id_table
        from unisem.evaluate.plots import codebook_usage_plot

        codes = item_codes(np.asarray(model.semantic_ids))
        with atomic_file(out_dir / SEMANTIC_ID_TABLE) as tmp:
            pq.write_table(semantic_id_table(codes, item_ids), tmp)
        codebook_usage_plot(codes, model.config.quantizer.codebook_size, out_dir / CODEBOOK_PLOT)
    # metrics.json last: its presence means the evaluation finished.
    return write_text_atomic(out_dir / METRICS_FILE, json.dumps(result, indent=2, allow_nan=False) + "\n")


def format_report(result: dict[str, Any]) -> str:
    """A readable table: one row per protocol and per slice x protocol, one column per metric."""
    protocols = result.get("protocols", {})
    names: list[str] = []
    for metrics in protocols.values():
        names.extend(m for m in metrics if m not in names)
    rows: list[tuple[str, str, str, list[str]]] = []
    for protocol, metrics in protocols.items():
        rows.append(("all", protocol, str(result.get("users", "")), [_fmt(metrics.get(m)) for m in names]))
    for slice_name, entry in result.get("slices", {}).items():
        for protocol in protocols:
            metrics = entry.get(protocol) or {}
            rows.append((slice_name, protocol, str(entry.get("users", "")), [_fmt(metrics.get(m)) for m in names]))
    # The popularity baseline under the model's rows: the first thing to compare the model with.
    for protocol, metrics in ((result.get("baselines") or {}).get("popularity") or {}).items():
        rows.append(("popularity baseline", protocol, str(result.get("users", "")), [_fmt(metrics.get(m)) for m in names]))
    header = ["slice", "protocol", "users", *names]
    table = [header] + [[s, p, n, *vals] for s, p, n, vals in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"split: {result.get('split')}   users: {result.get('users')}   items: {result.get('items', '?')}"]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    diag = result.get("diagnostics") or {}
    if diag:
        lines.append("")
        lines.append(
            f"variant {diag.get('variant')}: {diag.get('embedding_params'):,} embedding parameters "
            f"({diag.get('embedding_param_reduction', 0.0):.1%} fewer than id-only's "
            f"{diag.get('id_only_embedding_params'):,})"
        )
        if "codebook_usage" in diag:
            usage = ", ".join(f"{u:.0%}" for u in diag["codebook_usage"])
            lines.append(
                f"semantic IDs ({diag.get('distance')}, {diag['levels']} x {diag['codebook_size']}): codebook usage "
                f"per level {usage}; collision rate {diag['collision_rate']:.2%}"
            )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"
