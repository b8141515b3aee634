"""The run summary: gate verdict and why, metrics, model version and promotion decision, in one place.

Pure functions from stage records (``unisem.pipeline.records``) to a JSON-able summary and its Markdown and
HTML renderings, so what a run reports is tested without running it.
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from unisem.pipeline.records import STAGES

SUCCEEDED = "succeeded"
STOPPED_AT_GATE = "stopped_at_gate"
FAILED = "failed"
INCOMPLETE = "incomplete"


def _outputs(records: Mapping[str, Mapping[str, Any]], stage: str) -> dict[str, Any]:
    rec = records.get(stage) or {}
    return dict(rec.get("outputs") or {}) if rec.get("status") == "ok" else {}


def build_summary(run_id: str, records: Mapping[str, Mapping[str, Any]],
                  expected: Sequence[str] = STAGES[:-1]) -> dict[str, Any]:
    """Summarise a run from its stage records; ``expected`` are the stages the run was meant to go through."""
    stages: dict[str, str] = {}
    failed_stage, error = None, None
    gate_out = _outputs(records, "gate")
    stopped = bool(gate_out) and not gate_out.get("proceed", True)
    for name in expected:
        rec = records.get(name)
        if rec is None:
            stages[name] = "skipped" if stopped else "not run"
        else:
            stages[name] = str(rec.get("status", "unknown"))
            if stages[name] == "failed" and failed_stage is None:
                failed_stage, error = name, rec.get("error")
    if failed_stage is not None:
        status = FAILED
    elif stopped:
        status = STOPPED_AT_GATE
    elif all(stages[s] == "ok" for s in expected):
        status = SUCCEEDED
    else:
        status = INCOMPLETE

    validate = _outputs(records, "validate")
    gate = {
        "verdict": validate.get("verdict", gate_out.get("verdict")),
        "reasons": list(validate.get("reasons") or gate_out.get("reasons") or ()),
        "report": validate.get("report_path"),
        "verdict_file": validate.get("verdict_path"),
    }
    evaluation = _outputs(records, "evaluate")
    register = _outputs(records, "register")
    promote = _outputs(records, "promote")
    train = _outputs(records, "train")
    recommend = _outputs(records, "recommend")
    summary: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "failed_stage": failed_stage,
        "error": error,
        "stages": stages,
        "data": {"catalog": validate.get("catalog"), "interactions": validate.get("interactions")},
        "gate": gate,
        "training": {"best_epoch": train.get("best_epoch"), "model_dir": train.get("model_dir")},
        "metrics": dict(evaluation.get("headline") or {}),
        "metrics_file": evaluation.get("metrics_path"),
        "model": {k: register.get(k) for k in ("model_name", "version", "model_uri", "mlflow_run_id",
                                              "tracking_uri", "reused")} if register else {},
        "promotion": dict(promote) if promote else {},
        "recommendations": {k: recommend.get(k) for k in ("path", "published", "users", "rows", "fallback_users",
                                                          "model_version")} if recommend else {},
    }
    return summary


def _headline(status: str, summary: Mapping[str, Any]) -> str:
    if status == SUCCEEDED:
        return "The run succeeded."
    if status == STOPPED_AT_GATE:
        return "The run stopped at the quality gate; no model was trained and the champion is unchanged."
    if status == FAILED:
        return f"The run failed at stage `{summary.get('failed_stage')}`: {summary.get('error')}"
    return "The run is incomplete: some stages have not run."


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def render_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# unisem run {summary['run_id']}", "", _headline(summary["status"], summary), ""]
    gate = summary.get("gate") or {}
    lines += ["## Quality gate", "", f"- verdict: **{_fmt(gate.get('verdict'))}**"]
    lines += [f"- {r}" for r in gate.get("reasons") or ()]
    if gate.get("report"):
        lines.append(f"- report: {gate['report']}")
    lines.append("")
    metrics = summary.get("metrics") or {}
    if metrics:
        lines += ["## Test metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(metrics.items())]
        lines.append("")
    model = summary.get("model") or {}
    if model:
        lines += ["## Model", "", f"- {model.get('model_name')} version {model.get('version')} ({model.get('model_uri')})"]
        if model.get("reused"):
            lines.append("- already registered for this run id; no duplicate version was created")
        lines.append("")
    promo = summary.get("promotion") or {}
    if promo:
        verb = "promoted to champion" if promo.get("promoted") else "not promoted"
        lines += ["## Promotion", "", f"- {verb}: {promo.get('reason')}", ""]
    recs = summary.get("recommendations") or {}
    if recs:
        lines += ["## Recommendations", "",
                  f"- top-K for {recs.get('users')} users ({recs.get('fallback_users')} by the fallback) with"
                  f" champion version {recs.get('model_version')}: {recs.get('path')}",
                  f"- published: {recs.get('published')}", ""]
    lines += ["## Stages", "", "| stage | status |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in (summary.get("stages") or {}).items()]
    return "\n".join(lines) + "\n"


def render_html(summary: Mapping[str, Any]) -> str:
    """A self-contained page: the Markdown text in a <pre>, so it needs no Markdown library to read."""
    body = html.escape(render_markdown(summary))
    title = html.escape(f"unisem run {summary['run_id']}: {summary['status']}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><pre style='font-family: monospace; white-space: pre-wrap'>{body}</pre></body></html>\n")
