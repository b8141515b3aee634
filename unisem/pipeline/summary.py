"""The run summary: gate verdict and why, metrics, model version and promotion decision, in one place.

Pure functions from stage records (``unisem.pipeline.records``) to a JSON-able summary and its Markdown and
HTML renderings, so what a run reports is tested without running it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from unisem.pipeline.records import STAGES

SUCCEEDED = "succeeded"
STOPPED_AT_GATE = "stopped_at_gate"
FAILED = "failed"
INCOMPLETE = "incomplete"
COMPARE_PAGE = "compare.html"


def _outputs(records: Mapping[str, Mapping[str, Any]], stage: str) -> dict[str, Any]:
    rec = records.get(stage) or {}
    return dict(rec.get("outputs") or {}) if rec.get("status") == "ok" else {}


def build_summary(run_id: str, records: Mapping[str, Mapping[str, Any]],
                  expected: Sequence[str] = STAGES[:-1]) -> dict[str, Any]:
    """Summarise a run from its stage records; ``expected`` are the stages the run was meant to go through."""
    stages: dict[str, str] = {}
    durations: dict[str, float] = {}
    failed_stage, error, trace = None, None, None
    gate_out = _outputs(records, "proceed")
    stopped = bool(gate_out) and not gate_out.get("proceed", True)
    for name in expected:
        rec = records.get(name)
        if rec is None:
            stages[name] = "skipped" if stopped else "not run"
        else:
            stages[name] = str(rec.get("status", "unknown"))
            if isinstance(rec.get("seconds"), (int, float)):
                durations[name] = float(rec["seconds"])
            if stages[name] == "failed" and failed_stage is None:
                failed_stage, error, trace = name, rec.get("error"), rec.get("traceback")
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
        "traceback": trace,
        "stages": stages,
        "durations": durations,
        "data": {"catalog": validate.get("catalog"), "interactions": validate.get("interactions")},
        "gate": gate,
        "training": {"best_epoch": train.get("best_epoch"), "model_dir": train.get("model_dir")},
        "metrics": dict(evaluation.get("metrics") or {}),
        "metrics_file": evaluation.get("metrics_path"),
        "model": {k: register.get(k) for k in ("model_name", "version", "model_uri", "mlflow_run_id",
                                              "tracking_uri", "reused", "run_url", "version_url")} if register else {},
        "promotion": {k: v for k, v in promote.items() if k != "comparison"} if promote else {},
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
        lines += ["## Promotion", "", f"- {verb}: {promo.get('reason')}"]
        for g in promo.get("guardrails") or ():
            state = "no users" if g.get("drop") is None else ("BREACHED" if g.get("breached") else "ok")
            lines.append(f"- guardrail {g.get('slice')}: {state}")
        lines.append("")
    recs = summary.get("recommendations") or {}
    if recs:
        lines += ["## Recommendations", "",
                  f"- top-K for {recs.get('users')} users ({recs.get('fallback_users')} by the fallback) with"
                  f" champion version {recs.get('model_version')}: {recs.get('path')}",
                  f"- published: {recs.get('published')}", ""]
    lines += ["## Stages", "", "| stage | status |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in (summary.get("stages") or {}).items()]
    return "\n".join(lines) + "\n"


def page_links(summary: Mapping[str, Any], report_dir: Path | None = None) -> list[dict[str, str]]:
    """The links of the summary page: relative to ``report_dir`` for files of the run, absolute URLs for an
    MLflow server. Only what exists is linked."""
    links: list[dict[str, str]] = []

    def local(label: str, path: Any) -> None:
        if not path:
            return
        target = Path(str(path))
        if report_dir is not None:
            if not target.is_absolute():
                target = report_dir / target
            if not target.exists():
                return
            links.append({"label": label, "href": os.path.relpath(target, report_dir)})
        else:
            links.append({"label": label, "href": str(path)})

    gate = summary.get("gate") or {}
    if summary.get("promotion") or summary.get("model"):  # written beside the summary by the same stage
        links.append({"label": "challenger vs champion", "href": COMPARE_PAGE})
    local("quality gate report", gate.get("report"))
    if gate.get("report"):
        local("Great Expectations Data Docs", Path(str(gate["report"])).parent / "data_docs" / "index.html")
    local("published quality report", summary.get("quality_published"))
    local("test metrics (JSON)", summary.get("metrics_file"))
    model = summary.get("model") or {}
    if model.get("run_url"):
        links.append({"label": "MLflow run", "href": str(model["run_url"])})
    if model.get("version_url"):
        links.append({"label": f"model version {model.get('version')}", "href": str(model["version_url"])})
    return links


def metric_table(metrics: Mapping[str, float]) -> dict[str, Any] | None:
    """``{"protocols": [...], "names": [...], "cells": {"full/NDCG@10": ...}}`` for the page's table."""
    if not metrics:
        return None
    protocols: list[str] = []
    names: list[str] = []
    for key in metrics:
        protocol, _, name = key.partition("/")
        if protocol not in protocols:
            protocols.append(protocol)
        if name not in names:
            names.append(name)
    from unisem.pipeline.pages import metric_order

    return {"protocols": protocols, "names": sorted(names, key=metric_order), "cells": dict(metrics)}


def render_html(summary: Mapping[str, Any], report_dir: Path | None = None) -> str:
    """The summary page (Jinja2 template, self-contained): verdict and reasons, links, promotion with its
    interval and guardrails, metrics, stages with durations, the error of a failed stage."""
    from unisem.pipeline.pages import render_summary_page

    headline = _headline(summary["status"], summary).replace("`", "")
    return render_summary_page(summary, headline, page_links(summary, report_dir),
                               metric_table(summary.get("metrics") or {}))
