"""The promotion rule: ``champion`` moves to the challenger only when it wins, on today's data.

Both models are evaluated now, on the same current features (test split), because numbers measured on
different data are not comparable: yesterday's champion may have been scored on an easier test set. An
item the older model never saw is given to it through its semantic tokens (its text embedding from today's
embeddings), as serving would.

One float per model is not evidence: a +0.0001 on one test split is noise. The rule
(``promotion_rule``, pure) takes each test user's value of the promotion metric for both models and
promotes only when the lower bound of a paired bootstrap interval of the gain is above
``registry.min_improvement`` and no guardrail slice (tail, cold and new items by default) drops by more
than ``registry.guardrail_max_drop``: a model that wins overall while collapsing on the items that need
the semantic tokens most is refused. Every decision - promoted or refused - is recorded with both numbers,
the interval, each guardrail and the reason: as tags and the description of the challenger's version, and
as ``promotion.json`` (with the full comparison the report's comparison page shows) in the run folder.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from unisem.evaluate.bootstrap import Interval, paired_bootstrap

from unisem.atomic import write_text_atomic
from unisem.config.schema import UnisemConfig
from unisem.progress import say
from unisem.registry.registration import CHALLENGER, CHAMPION
from unisem.registry.tracking import configure, store_client

PROMOTION_FILE = "promotion.json"
NEW = "new"  # the slice of test users whose target item the champion never saw


class Guardrail(NamedTuple):
    """One slice's check: the challenger may not fall below the champion by more than ``max_drop``."""

    slice: str
    users: int
    challenger: float | None
    champion: float | None
    drop: float | None  # champion - challenger (positive = the challenger is worse)
    max_drop: float
    breached: bool


class RuleResult(NamedTuple):
    promoted: bool
    reason: str
    interval: Interval | None  # of challenger - champion on the whole test set; None without a champion
    guardrails: tuple[Guardrail, ...]


class PromotionDecision(NamedTuple):
    promoted: bool
    reason: str
    metric: str
    challenger_version: str
    challenger_value: float
    champion_version: str | None  # the champion before the decision (None: there was none)
    champion_value: float | None
    min_improvement: float
    interval: dict[str, Any] | None = None  # Interval.to_dict() of challenger - champion
    guardrails: tuple[dict[str, Any], ...] = ()
    comparison: dict[str, Any] | None = None  # unisem.evaluate.comparison.compare_ranks + codebook usage


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def promotion_rule(
    challenger: np.ndarray,
    champion: np.ndarray | None,
    metric: str,
    min_improvement: float = 0.0,
    slices: Mapping[str, np.ndarray] | None = None,
    max_drop: float = 0.02,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> RuleResult:
    """Pure rule on per-user values of ``metric`` for the same test users (challenger, champion).

    No champion: promote. Otherwise promote only if the lower bound of the paired bootstrap interval of
    ``challenger - champion`` (``level``, ``resamples``, ``seed``) is above ``min_improvement`` and no slice
    of ``slices`` (name -> bool mask over the users) has a mean drop above ``max_drop``. A slice without
    users is recorded but cannot breach: there is nothing to compare.
    """
    challenger = np.asarray(challenger, dtype=np.float64)
    if champion is None:
        mean = _mean(challenger)
        shown = "n/a" if mean is None else f"{mean:.6f}"
        return RuleResult(True, f"no champion yet: the first model becomes champion ({metric} = {shown})", None, ())
    champion = np.asarray(champion, dtype=np.float64)
    interval = paired_bootstrap(challenger, champion, resamples, level, seed)
    guardrails = []
    for name, mask in (slices or {}).items():
        mask = np.asarray(mask, dtype=bool)
        a, b = _mean(challenger[mask]), _mean(champion[mask])
        drop = None if a is None or b is None else b - a
        guardrails.append(Guardrail(name, int(mask.sum()), a, b, drop, float(max_drop),
                                    drop is not None and drop > max_drop))
    pct = f"{level:.0%}"
    gain = (f"gain {interval.mean:+.6f} on {metric}, {pct} interval [{interval.low:+.6f}, {interval.high:+.6f}] "
            f"over {interval.users} test users")
    breached = [g for g in guardrails if g.breached]
    if not np.isfinite(interval.low):
        return RuleResult(False, f"no test users to compare on {metric}; champion stays", interval, tuple(guardrails))
    if interval.low <= min_improvement:
        return RuleResult(False, f"{gain}: the lower bound is not above the required {min_improvement:.6f}; "
                                 "champion stays", interval, tuple(guardrails))
    if breached:
        named = "; ".join(f"slice {g.slice} drops {g.drop:.6f} ({g.champion:.6f} -> {g.challenger:.6f}, "
                          f"{g.users} users), more than {g.max_drop:.6f}" for g in breached)
        return RuleResult(False, f"{gain}, but guardrail breached: {named}; champion stays", interval,
                          tuple(guardrails))
    return RuleResult(True, f"challenger promoted: {gain}, lower bound above {min_improvement:.6f}; "
                            "no guardrail slice dropped", interval, tuple(guardrails))


class ServedEvaluation(NamedTuple):
    report: Any  # unisem.evaluate.protocols.EvaluationReport (ranks per protocol, no slices)
    unknown: np.ndarray  # data item indices (1-based) the model did not know before today
    diagnostics: dict[str, Any]  # codebook usage and collisions of the model's own semantic IDs


def score_serving(serving, cfg: UnisemConfig, data, text_embeddings: np.ndarray | None,
                  protocols: Sequence[str] | None = None) -> ServedEvaluation:
    """Per-user ranks of a served model on the test split of ``data`` (current features), in ``data``'s
    vocabulary, under ``protocols`` (default: both of cfg.evaluation).

    Items of ``data`` the model does not know are added from ``text_embeddings`` (rows aligned with
    ``data``'s item indices), so they compete for the top ranks as they would in serving; without
    embeddings (or with another encoder's) they can never be recommended by this model.
    """
    from unisem.evaluate.protocols import evaluate
    from unisem.evaluate.saved_model import model_diagnostics

    rec = serving.recommender
    diagnostics = {k: v for k, v in model_diagnostics(rec, len(serving.item_ids)).items()
                   if k in ("variant", "codebook_usage", "collision_rate", "levels", "codebook_size")}
    unknown = [j for j, item in enumerate(data.item_ids) if item not in serving.index]
    if unknown and text_embeddings is not None:
        try:
            serving.add_items([data.item_ids[j] for j in unknown], text_embeddings[np.asarray(unknown) + 1])
        except ValueError as exc:  # another text encoder: the model cannot read today's embeddings
            warnings.warn(f"{len(unknown)} current items stay unscorable for this model: {exc}")
    report = evaluate(
        serving.aligned_score_fn(data.item_ids), data, cfg.evaluation, split="test", max_len=cfg.data.max_seq_len,
        protocols=protocols, slices=False,
    )
    return ServedEvaluation(report, np.asarray(unknown, dtype=np.int64) + 1, diagnostics)


def evaluate_serving(serving, cfg: UnisemConfig, data, text_embeddings: np.ndarray | None, metric: str) -> float:
    """``metric`` of a served model on the test split of ``data`` (see ``score_serving``)."""
    from unisem.evaluate.protocols import split_metric_name

    protocol, _ = split_metric_name(metric)
    return float(score_serving(serving, cfg, data, text_embeddings, (protocol,)).report.metric(metric))


def evaluate_registered(
    model_uri: str, cfg: UnisemConfig, data, text_embeddings: np.ndarray | None, metric: str
) -> float:
    """``evaluate_serving`` of a registered model, loaded through the pyfunc loader (artifacts checked)."""
    from unisem.registry.pyfunc_model import load_serving

    return evaluate_serving(load_serving(model_uri).serving, cfg, data, text_embeddings, metric)


def guardrail_masks(cfg: UnisemConfig, data, champion_unknown: np.ndarray) -> dict[str, np.ndarray]:
    """bool [test users] per slice: cold, head, torso, tail (unisem.evaluate.slices) and ``new``, the users
    whose test item the champion had never seen (it reached the champion only through its text)."""
    from unisem.data.dataset import split_inputs
    from unisem.evaluate.slices import slice_masks

    masks = dict(slice_masks(data, cfg.evaluation, "test"))
    _, targets = split_inputs(data, "test")
    masks[NEW] = np.isin(np.asarray(targets, dtype=np.int64), champion_unknown)
    return masks


def describe(decision: PromotionDecision) -> str:
    """The decision as the registered version's description (what MLflow's version page shows first)."""
    verb = "PROMOTED to champion" if decision.promoted else "NOT promoted"
    lines = [f"{verb} ({decision.metric}): {decision.reason}"]
    if decision.champion_value is not None:
        lines.append(f"challenger {decision.challenger_value:.6f} vs champion v{decision.champion_version} "
                     f"{decision.champion_value:.6f} on today's test users")
    for g in decision.guardrails:
        state = "BREACHED" if g["breached"] else "ok"
        if g["drop"] is None:
            lines.append(f"guardrail {g['slice']}: no users")
        else:
            lines.append(f"guardrail {g['slice']}: {state}, drop {g['drop']:+.6f} (max {g['max_drop']:.6f}, "
                         f"{g['users']} users)")
    return "\n".join(lines)


def promote_if_better(
    cfg: UnisemConfig,
    features_dir: Path,
    embeddings_dir: Path | None = None,
    record_dir: Path | None = None,
    challenger_version: str | None = None,
) -> PromotionDecision:
    """Move ``champion`` to the challenger (alias ``challenger`` unless a version is given) if it wins on
    cfg.registry.promotion_metric by at least cfg.registry.min_improvement on ``features_dir``'s test split.

    ``embeddings_dir``: today's text embeddings (items the champion never saw reach it through them);
    ``record_dir`` receives ``promotion.json``.
    """
    from mlflow.exceptions import MlflowException

    from unisem.data.dataset import load_features

    name, metric, margin = cfg.registry.model_name, cfg.registry.promotion_metric, cfg.registry.min_improvement
    uri = configure(cfg)
    client = store_client(uri)
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
    from unisem.evaluate.comparison import compare_ranks
    from unisem.evaluate.metrics import per_user_values
    from unisem.evaluate.protocols import default_protocols, split_metric_name
    from unisem.registry.pyfunc_model import load_serving

    reg = cfg.registry
    protocol, metric_name = split_metric_name(metric)
    protocols = tuple(dict.fromkeys((*default_protocols(cfg.evaluation), protocol)))
    served = {"challenger": score_serving(load_serving(f"models:/{name}/{challenger.version}").serving, cfg, data,
                                          text, protocols)}
    already = champion is not None and str(champion.version) == str(challenger.version)
    if champion is not None and not already:
        served["champion"] = score_serving(load_serving(f"models:/{name}/{champion.version}").serving, cfg, data,
                                           text, protocols)
    ours = served["challenger"].report
    challenger_value = float(ours.metric(metric))
    comparison: dict[str, Any] | None = None
    interval, guardrails = None, ()
    if already:
        promoted, reason, champion_value = False, f"version {challenger.version} is already the champion", challenger_value
    elif champion is None:
        champion_value = None
        rule = promotion_rule(per_user_values(ours.ranks[protocol], metric_name), None, metric)
        promoted, reason = rule.promoted, rule.reason
    else:
        theirs = served["champion"].report
        champion_value = float(theirs.metric(metric))
        masks = guardrail_masks(cfg, data, served["champion"].unknown)
        rule = promotion_rule(
            per_user_values(ours.ranks[protocol], metric_name), per_user_values(theirs.ranks[protocol], metric_name),
            metric, margin, {k: masks[k] for k in reg.guardrail_slices}, reg.guardrail_max_drop,
            reg.bootstrap_resamples, reg.bootstrap_level, reg.bootstrap_seed,
        )
        promoted, reason = rule.promoted, rule.reason
        interval = rule.interval.to_dict()
        guardrails = tuple(g._asdict() for g in rule.guardrails)
        comparison = compare_ranks(ours.ranks, theirs.ranks, cfg.evaluation.ks, masks, metric,
                                   reg.bootstrap_resamples, reg.bootstrap_level, reg.bootstrap_seed)
        comparison["diagnostics"] = {k: served[k].diagnostics for k in served}
        comparison["new_items"] = int(len(served["champion"].unknown))
    if comparison is None:
        from unisem.evaluate.metrics import metrics_from_ranks

        comparison = {"protocols": {p: {m: {"challenger": v, "champion": None, "delta": None}
                                        for m, v in metrics_from_ranks(r, cfg.evaluation.ks).items()}
                                    for p, r in ours.ranks.items()},
                      "slices": {}, "diagnostics": {"challenger": served["challenger"].diagnostics},
                      "users": int(ours.users), "level": reg.bootstrap_level, "resamples": reg.bootstrap_resamples}
    decision = PromotionDecision(
        promoted=promoted,
        reason=reason,
        metric=metric,
        challenger_version=str(challenger.version),
        challenger_value=challenger_value,
        champion_version=None if champion is None else str(champion.version),
        champion_value=champion_value,
        min_improvement=margin,
        interval=interval,
        guardrails=guardrails,
        comparison=comparison,
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
    if interval is not None:
        tags["promotion.interval"] = f"[{interval['low']:.6g}, {interval['high']:.6g}] at {interval['level']:.0%}"
    breached = [g["slice"] for g in guardrails if g["breached"]]
    if guardrails:
        tags["promotion.guardrails"] = "breached: " + ", ".join(breached) if breached else "ok"
    if not already:  # a rerun after the promotion keeps the recorded decision
        for key, value in tags.items():
            client.set_model_version_tag(name, challenger.version, key, value)
        client.update_model_version(name, challenger.version, description=describe(decision))
    say(__name__, f"promotion of {name} version {challenger.version}: {reason}")
    previous = Path(record_dir) / PROMOTION_FILE if record_dir is not None else None
    if already and previous is not None and previous.exists():
        try:
            kept = json.loads(previous.read_text())
        except json.JSONDecodeError:
            kept = {}
        if kept.get("challenger_version") == decision.challenger_version and kept.get("promoted"):
            previous = None  # this run's promotion.json already records how the version became champion
    if previous is not None:
        record = {**decision._asdict(), "features": str(Path(features_dir).resolve()), "model_name": name, "time": tags["promotion.time"]}
        write_text_atomic(previous, json.dumps(record, indent=2, sort_keys=True))
    return decision
