"""The run history across nights, read back from the run folders: what the comparison page plots as trends.

Each night's folder already holds what it decided (quality/verdict.json, evaluation/metrics.json,
registry/promotion.json), so the history needs no database of its own and a rerun of a night simply
replaces its row. Pure reading: a night whose files are missing or unreadable shows empty cells.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unisem.home import RunLayout

# Gate measures shown as trends: (measure key in verdict.json, label).
GATE_TRENDS = (
    ("catalog_items", "catalog items"),
    ("popularity_kl", "popularity KL drift"),
    ("gini", "Gini of item frequency"),
    ("title_share", "title share"),
)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def night_row(layout: RunLayout, metric: str = "full/NDCG@10") -> dict[str, Any]:
    """One night: gate verdict and measures, the challenger's and the champion's ``metric`` on that night's
    test users, and the promotion decision with its interval."""
    verdict = _read(layout.quality / "verdict.json")
    measures = verdict.get("measures") if isinstance(verdict.get("measures"), dict) else {}
    evaluation = _read(layout.evaluation / "metrics.json")
    promotion = _read(layout.registry / "promotion.json")
    same_metric = promotion.get("metric") == metric
    challenger = promotion.get("challenger_value") if same_metric else None
    if challenger is None:
        challenger = (evaluation.get("metrics") or {}).get(metric)
    interval = promotion.get("interval") or {}
    decision = None
    if promotion:
        decision = "promoted" if promotion.get("promoted") else "refused"
    return {
        "run_id": layout.root.name,
        "verdict": verdict.get("verdict"),
        "measures": {key: measures.get(key) for key, _ in GATE_TRENDS},
        "challenger": challenger,
        "champion": promotion.get("champion_value") if same_metric else None,
        "challenger_version": promotion.get("challenger_version"),
        "champion_version": promotion.get("champion_version"),
        "decision": decision,
        "low": interval.get("low"),
        "high": interval.get("high"),
        "reason": promotion.get("reason"),
    }


def night_history(home: Path, upto: str, nights: int, metric: str = "full/NDCG@10") -> list[dict[str, Any]]:
    """The last ``nights`` nightly runs up to and including run ``upto``, oldest first (quality-only runs
    of the data teams' DAG are not nights of the model)."""
    runs = Path(home) / "runs"
    if not runs.is_dir():
        return []
    names = sorted(p.name for p in runs.iterdir()
                   if p.is_dir() and p.name <= upto and not p.name.startswith("quality-")
                   and (p / "quality" / "verdict.json").exists())
    return [night_row(RunLayout(runs / name), metric) for name in names[-nights:]]
