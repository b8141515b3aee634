"""The one-page HTML gate report: verdict, failing checks first, then the plots and all measures.

Plots are PNG files next to the page and embedded in it (base64), so the page stays readable when copied
alone (e.g. attached to an MLflow run).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping

from unisem.quality import distribution as dist
from unisem.quality.checks import CheckResult

PLOTS = ("long_tail.png", "lorenz.png", "title_lengths.png", "sequence_lengths.png")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=90)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_plots(folder: Path, item_frequency: Mapping[int, int], sequence_lengths: Mapping[int, int],
                title_lengths: Mapping[int, int]) -> list[Path]:
    ih = dist.histogram(item_frequency)
    out = []
    plt, fig, ax = _figure()
    ranks, values = dist.long_tail(ih)
    if len(ranks):
        ax.plot(ranks, values, color="tab:blue")
        ax.set_xscale("log")
        ax.set_yscale("symlog")  # linear near zero, so items without interactions still show
        ax.set_ylim(bottom=0)
    ax.set(title="Long tail: interactions per item", xlabel="item rank (1 = most popular)", ylabel="interactions")
    out.append(_save(plt, fig, folder / PLOTS[0]))

    plt, fig, ax = _figure()
    x, y = dist.lorenz_curve(ih)
    ax.plot(x, y, color="tab:red", label=f"items (Gini {dist.gini(ih):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="equal popularity")
    ax.set(title="Lorenz curve of item frequency", xlabel="share of items (least popular first)",
           ylabel="share of interactions")
    ax.legend(loc="upper left")
    out.append(_save(plt, fig, folder / PLOTS[1]))

    for name, hist, title, xlabel in (
        (PLOTS[2], title_lengths, "Title length", "characters"),
        (PLOTS[3], sequence_lengths, "Sequence length", "interactions per user"),
    ):
        plt, fig, ax = _figure()
        h = dist.histogram(hist)
        if h.units:
            ax.bar(h.values, h.counts, width=max(1.0, (h.values.max() - h.values.min()) / 120), color="tab:green")
            if h.values.max() > 200:
                ax.set_xscale("symlog")
        ax.set(title=title, xlabel=xlabel, ylabel="count")
        out.append(_save(plt, fig, folder / name))
    return out


def _fmt(v) -> str:
    if v is None:
        return "not measured"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return html.escape(str(v))


# One line per check: what crossing it says about the data.
CHECK_MEANINGS = {
    "max_missing_item_id_share": "catalog rows without an item id cannot be recommended or joined",
    "max_duplicate_item_id_share": "one id on several catalog rows: which text describes the item is ambiguous",
    "min_title_share": "items without a title have little text for their semantic tokens",
    "min_median_title_length": "very short titles carry little meaning for the text encoder",
    "max_html_share": "HTML markup in titles leaks tags into the item text",
    "max_control_char_share": "control characters point to a broken export or encoding",
    "max_mojibake_share": "mis-decoded text (UTF-8 read as Latin-1) garbles the item text",
    "max_duplicate_title_share": "many items with the same title become indistinguishable by text",
    "max_normalized_duplicate_title_share": "titles equal up to case and punctuation: near-duplicate items",
    "max_empty_text_share": "items whose built text is too short get near-random semantic tokens",
    "min_brand_share": "few items with a brand: a useful part of the item text is missing",
    "min_category_share": "few items with categories: a useful part of the item text is missing",
    "max_invalid_price_share": "negative or absurd prices point to a broken price column",
    "max_unknown_item_share": "interactions with items not in the catalog are dropped",
    "max_duplicate_event_share": "repeated identical events inflate popularity",
    "max_top1pct_share": "the top 1% of items take most interactions: popularity dominates",
    "max_gini": "interactions concentrate on few items (Gini of item frequency)",
    "max_items_below_min_share": "many items with too few interactions to learn their ID embedding",
    "max_short_user_share": "many users are too short to train on and are dropped",
    "max_popularity_kl": "the item popularity distribution moved away from the last accepted night",
    "max_catalog_shrinkage": "the catalog lost items since the last accepted night",
    "max_user_count_change": "the number of users changed sharply since the last accepted night",
}
DRIFT_CHECKS = ("max_popularity_kl", "max_catalog_shrinkage", "max_user_count_change")


def check_rows(checks: list[CheckResult]) -> list[dict]:
    """One row per check with both levels: its state (the worst level crossed, ``ok``, or ``no baseline
    yet`` for drift on the first accepted night), observed value, warn and fail levels and meaning;
    crossed checks first (fail before warn), then the rest in config order."""
    by_check: dict[str, dict] = {}
    for c in checks:
        row = by_check.setdefault(c.check, {"check": c.check, "measure": c.measure, "observed": c.observed,
                                            "warn": None, "fail": None, "state": "ok",
                                            "meaning": CHECK_MEANINGS.get(c.check, "")})
        row[c.severity] = c.threshold
        if not c.passed and (row["state"] == "ok" or c.severity == "fail"):
            row["state"] = c.severity
    for row in by_check.values():
        if row["observed"] is None and row["state"] == "ok":
            row["state"] = "no baseline yet" if row["check"] in DRIFT_CHECKS else "not measured"
    rank = {"fail": 0, "warn": 1}
    return sorted(by_check.values(), key=lambda r: rank.get(r["state"], 2))


def _evidence(baseline: Mapping | None, expectations_failed: list[dict], offenders: Mapping[str, list[dict]],
              shown_in_table: set[str] = frozenset()) -> str:
    """The drift baseline compared with, failed expectations and the example offending rows of what the
    checks table does not show (failed expectations), as HTML."""
    parts = []
    if baseline:
        parts.append(f"<p>Drift baseline: {html.escape(str(baseline.get('note', '')))}.</p>")
    if expectations_failed:
        rows = "".join(
            f"<tr><td>{html.escape(f['suite'])}</td><td>{html.escape(f['expectation'])}</td>"
            f"<td>{html.escape(f['severity'])}</td><td>{_fmt(f.get('unexpected_count'))}</td></tr>"
            for f in expectations_failed
        )
        parts.append("<h2>Failed expectations (critical fails the gate, warning warns)</h2>"
                     "<table><tr><th>suite</th><th>expectation</th><th>severity</th><th>unexpected rows</th></tr>"
                     f"{rows}</table>")
    if offenders:
        blocks = []
        for check, rows in offenders.items():
            if not rows or check in shown_in_table:
                continue
            key = "user_id" if "user_id" in rows[0] else "item_id"
            cells = "".join(f"<tr><td>{html.escape(str(r.get(key)))}</td><td>{_fmt(r.get('value'))}</td></tr>"
                            for r in rows)
            blocks.append(f"<h3>{html.escape(check)}</h3><table><tr><th>{key}</th><th>value</th></tr>{cells}</table>")
        if blocks:
            parts.append("<h2>Examples of offending rows (up to 10 per check)</h2>" + "".join(blocks))
    return "".join(parts)


def offender_text(row: Mapping) -> str:
    """One offending row as ``id: value`` (the id column is the item's or the user's)."""
    key = "user_id" if "user_id" in row else "item_id"
    return f"{row.get(key)}: {row.get('value')}"


def write_report(path: Path, verdict: str, checks: list[CheckResult], measures: Mapping[str, float | None],
                 plots: list[Path], suites: list[dict], inputs: Mapping[str, str], baseline: Mapping | None = None,
                 expectations_failed: list[dict] = (), offenders: Mapping[str, list[dict]] | None = None) -> Path:
    """The gate's page. ``offenders``: example offending rows per check (ids and values), shown beside it."""
    colour = {"pass": "#2e7d32", "warn": "#ef6c00", "fail": "#c62828"}[verdict]
    rows = []
    for r in check_rows(checks):
        state = r["state"]
        style = {"fail": ' style="color:#c62828;font-weight:bold"', "warn": ' style="color:#ef6c00;font-weight:bold"'}
        op = "≤" if r["check"].startswith("max_") else "≥"
        shown = [offender_text(v) for v in (offenders or {}).get(r["check"], ())][:5]
        sample = "; ".join(html.escape(v[:80]) for v in shown)
        rows.append(
            f"<tr{style.get(state, '')}><td>{html.escape(state.upper() if state in style else state)}</td>"
            f"<td>quality.{r['check']}</td><td>{html.escape(r['meaning'])}</td>"
            f"<td>{_fmt(r['observed']) if r['observed'] is not None else html.escape(state)}</td>"
            f"<td>{op} {_fmt(r['warn'])}</td><td>{op} {_fmt(r['fail'])}</td><td>{sample}</td></tr>"
        )
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in plots
    )
    suite_rows = "".join(
        f"<tr><td>{html.escape(s['suite'])}</td><td>{'success' if s['success'] else 'unsuccessful'}</td>"
        f"<td>{s['evaluated']}</td><td>{s['failed_critical']}</td><td>{s['failed_warning']}</td></tr>"
        for s in suites
    )
    measure_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sorted(measures.items()))
    crossed = [c for c in checks if not c.passed]
    summary = (
        f"{sum(c.severity == 'fail' for c in crossed)} fail-level and {sum(c.severity == 'warn' for c in crossed)}"
        f" warn-level thresholds crossed, of {len(checks)}"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>unisem data-quality gate: {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} figure{{display:inline-block;margin:4px}}</style></head>
<body>
<h1>Data-quality gate: <span style="color:{colour}">{verdict.upper()}</span></h1>
<p>{summary}. Catalog <code>{html.escape(inputs.get('catalog', ''))}</code>, interactions
<code>{html.escape(inputs.get('interactions', ''))}</code>. Great Expectations Data Docs:
<a href="data_docs/index.html">data_docs/index.html</a>; machine-readable verdict: <a href="verdict.json">verdict.json</a>.</p>
<h2>Checks (crossed first)</h2>
<table><tr><th>state</th><th>setting</th><th>meaning</th><th>observed</th><th>warn level</th><th>fail level</th>
<th>examples</th></tr>{''.join(rows)}</table>
{_evidence(baseline, list(expectations_failed), offenders or {}, {c.check for c in checks})}
<h2>Plots</h2>{images}
<h2>Great Expectations suites</h2>
<table><tr><th>suite</th><th>result</th><th>expectations</th><th>critical failed</th><th>warning failed</th></tr>{suite_rows}</table>
<h2>All measures</h2><table>{measure_rows}</table>
</body></html>
"""
    path.write_text(page)
    return path
