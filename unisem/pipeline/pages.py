"""The run's HTML pages (summary.html, compare.html) from Jinja2 templates shipped in the package.

Pages are self-contained files opened from disk (or from an MLflow artifact view) on machines without
internet access: styles are inline, charts are inline SVG drawn here, and nothing is fetched from a
network. Links between pages and to the gate report are relative, so a copied run folder still works.
"""
from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

from unisem.pipeline.history import GATE_TRENDS

SERIES_COLOURS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a")


def _env():
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    # Chainable: a summary of a run that stopped early lacks whole sections, which then render empty.
    env = Environment(loader=PackageLoader("unisem.pipeline", "templates"), undefined=ChainableUndefined,
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.globals.update(fmt=fmt, signed=signed, pct=pct, duration=duration, measure=measure, tone=tone)
    return env


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any) -> str:
    return f"{value:.4f}" if _finite(value) else "-"


def signed(value: Any) -> str:
    return f"{value:+.4f}" if _finite(value) else "-"


def pct(value: Any) -> str:
    return f"{value:.0%}" if _finite(value) else "-"


def measure(value: Any) -> str:
    if not _finite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"


def duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def tone(entry: Mapping[str, Any]) -> str:
    """CSS class of a delta: good/bad when its interval excludes 0, else none."""
    low, high = entry.get("low"), entry.get("high")
    if _finite(low) and low > 0:
        return "good"
    if _finite(high) and high < 0:
        return "bad"
    return ""


def line_chart(labels: Sequence[str], series: Mapping[str, Sequence[Any]], title: str,
               width: int = 720, height: int = 200) -> str:
    """An inline SVG line chart of one or more series over ``labels`` (None = no value that night)."""
    left, right, top, bottom = 60, 130, 24, 36
    values = [v for s in series.values() for v in s if _finite(v)]
    out = [f'<svg role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
           f'<text x="{left}" y="16" font-size="12" font-weight="bold">{html.escape(title)}</text>']
    if not values or not labels:
        out.append(f'<text x="{left}" y="{height // 2}" font-size="12" fill="#777">no values yet</text></svg>')
        return "".join(out)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0) * 0.1, hi + 0.5 * (abs(hi) or 1.0) * 0.1
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1.0 - (v - lo) / (hi - lo))

    for v in (lo, (lo + hi) / 2, hi):
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e0e0e0"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{measure(v)}</text>')
    step = max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % step == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{height - 14}" font-size="9" text-anchor="middle">'
                       f'{html.escape(str(label)[:10])}</text>')
    for k, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        pts = [(x(i), y(v)) for i, v in enumerate(points) if _finite(v)]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in pts)
        out.append(f'<text x="{left + plot_w + 10}" y="{top + 14 * (k + 1)}" font-size="11" fill="{colour}">'
                   f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def metric_order(name: str) -> tuple[int, int]:
    """Sort key: HR@K, then NDCG@K, each by K, then MRR and anything else."""
    kind, _, k = name.partition("@")
    return ({"HR": 0, "NDCG": 1}.get(kind, 2), int(k) if k.isdigit() else 0)


def _ordered(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: table[k] for k in sorted(table, key=metric_order)}


def render_summary_page(summary: Mapping[str, Any], headline: str, links: Sequence[Mapping[str, str]],
                        metrics: Mapping[str, Any] | None) -> str:
    return _env().get_template("summary.html.j2").render(s=summary, headline=headline, links=list(links),
                                                          metrics=metrics)


def render_compare_page(run_id: str, promotion: Mapping[str, Any] | None, nights: Sequence[Mapping[str, Any]],
                        guardrails: Sequence[str] = (), gate_report: str | None = None) -> str:
    """The comparison page: ``promotion`` is this night's promotion.json (with its ``comparison``),
    ``nights`` the rows of ``unisem.pipeline.history.night_history``."""
    p = dict(promotion or {})
    comparison = dict(p.get("comparison") or {})
    metric = str(p.get("metric") or "full/NDCG@10")
    metric_protocol, _, metric_name = metric.partition("/")
    labels = [n["run_id"] for n in nights]
    model_chart = line_chart(labels, {"challenger": [n.get("challenger") for n in nights],
                                      "champion": [n.get("champion") for n in nights]}, f"test {metric}")
    gate_charts = [line_chart(labels, {label: [n["measures"].get(key) for n in nights]}, label, height=150)
                   for key, label in GATE_TRENDS]
    # JSON files keep keys sorted; the page shows HR@K, NDCG@K by K, then MRR, as the evaluation does
    comparison["protocols"] = {p: _ordered(t) for p, t in (comparison.get("protocols") or {}).items()}
    comparison["slices"] = {name: {k: _ordered(v) if isinstance(v, dict) else v for k, v in e.items()}
                            for name, e in (comparison.get("slices") or {}).items()}
    comparison.setdefault("slices", {})
    comparison.setdefault("diagnostics", {})
    comparison.setdefault("users", 0)
    comparison.setdefault("new_items", 0)
    comparison.setdefault("level", 0.95)
    comparison.setdefault("resamples", 0)
    return _env().get_template("compare.html.j2").render(
        run_id=run_id, p=p if p else None, c=comparison, nights=list(nights), model_chart=model_chart,
        gate_charts=gate_charts, gate_trends=GATE_TRENDS, trend_metric=metric, metric_protocol=metric_protocol,
        metric_name=metric_name, guardrails=list(guardrails), gate_report=gate_report,
    )
