"""The promotion rule: ``champion`` moves to the challenger only when it wins, on today's data.

Both models are evaluated now, on the same current features (test split), because numbers measured on
different data are not comparable: yesterday's champion may have been scored on an easier test set. An
item the older model never saw is given to it through its semantic tokens (its text embedding from today's
embeddings), as serving would. Every decision - promoted or refused - is recorded with both numbers and the
reason, as tags on the challenger's version and as ``promotion.json`` in the run folder.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unisem.atomic import write_text_atomic
from unisem.config.schema import UnisemConfig
from unisem.home import RunLayout
from unisem.registry.registration import CHALLENGER, CHAMPION
from unisem.registry.tracking import configure

PROMOTION_FILE = "promotion.json"


class PromotionDecision(NamedTuple):
    promoted: bool
    reason: str
    metric: str
    challenger_version: str
    challenger_value: float
    champion_version: str | None  # the champion before the decision (None: there was none)
    champion_value: float | None
    min_improvement: float


def decide(challenger: float, champion: float | None, min_improvement: float, metric: str) -> tuple[bool, str]:
    """Pure rule: no champion -> promote; else promote only if challenger - champion > 0 and >= margin."""
    if champion is None:
        return True, f"no champion yet: the first model becomes champion ({metric} = {challenger:.6f})"
    if not np.isfinite(challenger):
        return False, f"challenger's {metric} is not a number ({challenger})"
    gain = challenger - champion
    if gain > 0 and gain >= min_improvement:
        return True, (
            f"challenger beats champion on {metric}: {challenger:.6f} vs {champion:.6f} "
            f"(+{gain:.6f} >= required {min_improvement:.6f})"
        )
    if gain <= 0:
        why = f"does not beat the champion ({challenger:.6f} vs {champion:.6f})"
    else:
        why = f"gains only {gain:.6f} over the champion ({challenger:.6f} vs {champion:.6f}), below the required {min_improvement:.6f}"
    return False, f"challenger {why} on {metric}; champion stays"


def evaluate_serving(serving, cfg: UnisemConfig, data, text_embeddings: np.ndarray | None, metric: str) -> float:
    """``metric`` of a served model on the test split of ``data`` (current features), in ``data``'s vocabulary.

    Items of ``data`` the model does not know are added from ``text_embeddings`` (rows aligned with
    ``data``'s item indices), so they compete for the top ranks as they would in serving; without
    embeddings (or with another encoder's) they can never be recommended by this model.
    """
    from unisem.evaluate.protocols import evaluate, split_metric_name

    protocol, _ = split_metric_name(metric)
    unknown = [j for j, item in enumerate(data.item_ids) if item not in serving.index]
    if unknown and text_embeddings is not None:
        try:
            serving.add_items([data.item_ids[j] for j in unknown], text_embeddings[np.asarray(unknown) + 1])
        except ValueError as exc:  # another text encoder: the model cannot read today's embeddings
            warnings.warn(f"{len(unknown)} current items stay unscorable for this model: {exc}")
    report = evaluate(
        serving.aligned_score_fn(data.item_ids), data, cfg.evaluation, split="test", max_len=cfg.data.max_seq_len,
        protocols=(protocol,), slices=False,
    )
    return float(report.metric(metric))


def evaluate_registered(
    model_uri: str, cfg: UnisemConfig, data, text_embeddings: np.ndarray | None, metric: str
) -> float:
    """``evaluate_serving`` of a registered model, loaded through the pyfunc loader (artifacts checked)."""
    from unisem.registry.pyfunc_model import load_serving

    return evaluate_serving(load_serving(model_uri).serving, cfg, data, text_embeddings, metric)


def promote_if_better(
    cfg: UnisemConfig,
    features_dir: Path,
    embeddings_dir: Path | None = None,
    layout: RunLayout | None = None,
    challenger_version: str | None = None,
) -> PromotionDecision:
    """Move ``champion`` to the challenger (alias ``challenger`` unless a version is given) if it wins on
    cfg.registry.promotion_metric by at least cfg.registry.min_improvement on ``features_dir``'s test split.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from unisem.data.dataset import load_features

    name, metric, margin = cfg.registry.model_name, cfg.registry.promotion_metric, cfg.registry.min_improvement
    uri = configure(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        challenger = client.get_model_version_by_alias(name, CHALLENGER) if challenger_version is None else (
            client.get_model_version(name, str(challenger_version))
        )
    except MlflowException as exc:
        raise ValueError(f"model {name!r} in {uri}: no challenger version to promote ({exc.message})") from exc
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None

    data = load_features(features_dir)
    text = None
    if embeddings_dir is not None and (Path(embeddings_dir) / "item_embeddings.safetensors").exists():
        from unisem.text.embeddings import load_item_embeddings

        text = load_item_embeddings(embeddings_dir)
    challenger_value = evaluate_registered(f"models:/{name}/{challenger.version}", cfg, data, text, metric)
    if champion is not None and str(champion.version) == str(challenger.version):
        promoted, reason, champion_value = False, f"version {challenger.version} is already the champion", challenger_value
    else:
        champion_value = (
            evaluate_registered(f"models:/{name}/{champion.version}", cfg, data, text, metric) if champion else None
        )
        promoted, reason = decide(challenger_value, champion_value, margin, metric)
    decision = PromotionDecision(
        promoted=promoted,
        reason=reason,
        metric=metric,
        challenger_version=str(challenger.version),
        challenger_value=challenger_value,
        champion_version=None if champion is None else str(champion.version),
        champion_value=champion_value,
        min_improvement=margin,
    )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, challenger.version)
    tags = {
        "promotion.decision": "promoted" if promoted else "refused",
        "promotion.reason": reason,
        "promotion.metric": metric,
        "promotion.challenger_value": f"{challenger_value:.6g}",
        "promotion.champion_value": "none" if champion_value is None else f"{champion_value:.6g}",
        "promotion.champion_version": decision.champion_version or "none",
        "promotion.features": str(Path(features_dir).resolve()),
        "promotion.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    already = champion is not None and str(champion.version) == str(challenger.version)
    if not already:  # a rerun after the promotion keeps the recorded decision
        for key, value in tags.items():
            client.set_model_version_tag(name, challenger.version, key, value)
    previous = layout.registry / PROMOTION_FILE if layout is not None else None
    if already and previous is not None and previous.exists():
        try:
            kept = json.loads(previous.read_text())
        except json.JSONDecodeError:
            kept = {}
        if kept.get("challenger_version") == decision.challenger_version and kept.get("promoted"):
            layout = None  # this run's promotion.json already records how the version became champion
    if layout is not None:
        record = {**decision._asdict(), "features": str(Path(features_dir).resolve()), "model_name": name, "time": tags["promotion.time"]}
        write_text_atomic(layout.registry / PROMOTION_FILE, json.dumps(record, indent=2, sort_keys=True))
    return decision
