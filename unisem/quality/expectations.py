"""Great Expectations 1.x suites run on the gate's Spark DataFrames, with a Data Docs site as output.

Three suites, each validated by one checkpoint run that also updates the Data Docs site:

- ``catalog_text_quality`` on the catalog rows: ids present and unique, titles present, lengths sane, no
  HTML markup, prices in range. Data Docs shows example offending values, which the measures cannot.
- ``interaction_log`` on the interaction rows: ids present, an order column present.
- ``gate_checks`` on the one-row table of measures (pandas: it is already on the driver): every [warn, fail] level of every configured check as
  an expectation with GX severity ``warning`` or ``critical``, so Data Docs lists the same thresholds that
  decide the verdict.
Thresholds come from ``QualityConfig``; row-level suites use the warn level as ``mostly``.

The rule that makes a failed expectation count (``gate.run_gate``): a failed expectation of the row-level
suites counts like a threshold of its severity, ``critical`` fails the gate and ``warning`` warns; each is
listed in ``verdict.json`` under ``expectations_failed``. ``gate_checks`` is left out of that list: it
restates the thresholds, which are already checks.
"""
from __future__ import annotations

from datetime import datetime, timezone

import logging
import os
import re
from pathlib import Path
from typing import Mapping, NamedTuple

from unisem.config import UnisemConfig
from unisem.quality.checks import FAIL, threshold_checks
from unisem.quality.measures import HTML_PATTERN

SITE_NAME = "unisem_gate"
MAX_TITLE_CHARS = 1000  # a longer title is a broken export (a description or a page pasted in), not a title
CHECKS_SUITE = "gate_checks"


class FailedExpectation(NamedTuple):
    suite: str
    expectation: str  # "expect_column_value_lengths_to_be_between(title)": type and column
    severity: str  # "critical" or "warning"
    unexpected_count: int | None
    unexpected_share: float | None  # of the rows
    examples: tuple  # a few unexpected values as GX reports them (cut short)

    def to_dict(self) -> dict:
        d = self._asdict()
        d["examples"] = list(self.examples)
        return d

# GX logs "Skipping registering function ..." at INFO for each decorated function it imports (hundreds of
# lines in a task log, nothing to act on); set before GX is first imported through this module.
logging.getLogger("great_expectations._docs_decorators").setLevel(logging.WARNING)


class SuiteOutcome(NamedTuple):
    suite: str
    success: bool
    evaluated: int
    failed_critical: int
    failed_warning: int
    failures: tuple[FailedExpectation, ...] = ()

    def to_dict(self) -> dict:
        d = self._asdict()
        d["failures"] = [f.to_dict() for f in self.failures]
        return d


def _failure(suite: str, result) -> FailedExpectation:
    config = result.expectation_config
    column = (config.kwargs or {}).get("column")
    name = f"{config.type}({column})" if column else str(config.type)
    details = dict(result.result or {})
    count = details.get("unexpected_count")
    share = details.get("unexpected_percent")
    examples = tuple(
        (v if not isinstance(v, str) or len(v) <= 80 else f"{v[:80]}… ({len(v):,} characters)")
        for v in (details.get("partial_unexpected_list") or [])[:5]
    )
    return FailedExpectation(suite, name, str(config.severity.value), None if count is None else int(count),
                             None if share is None else float(share) / 100.0, examples)


def _context(docs_dir: Path):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name=SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context


def _catalog_suite(cfg: UnisemConfig):
    import great_expectations as gx

    q = cfg.quality
    e = gx.expectations
    warn = "warning"
    return [
        e.ExpectColumnValuesToNotBeNull(column="item_id"),
        e.ExpectColumnValuesToBeUnique(column="item_id"),
        e.ExpectColumnValuesToNotBeNull(column="title", mostly=q.min_title_share[0], severity=warn),
        e.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1, max_value=MAX_TITLE_CHARS, severity=warn),
        e.ExpectColumnValuesToNotMatchRegex(
            column="title", regex=HTML_PATTERN, mostly=1.0 - q.max_html_share[0], severity=warn
        ),
        e.ExpectColumnValuesToBeBetween(
            column="price", min_value=0, max_value=q.max_price, mostly=1.0 - q.max_invalid_price_share[0], severity=warn
        ),
    ]


def _interaction_suite(columns: list[str]):
    import great_expectations as gx

    e = gx.expectations
    suite = [
        e.ExpectColumnValuesToNotBeNull(column="user_id"),
        e.ExpectColumnValuesToNotBeNull(column="item_id"),
        e.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    return suite


def _checks_suite(cfg: UnisemConfig, measures: Mapping[str, float | None]):
    import great_expectations as gx

    out = []
    for check, measure, severity, threshold in threshold_checks(cfg.quality):
        if measures.get(measure) is None:
            continue  # not measured this run (drift without a baseline)
        bound = {"max_value": threshold} if check.startswith("max_") else {"min_value": threshold}
        out.append(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column=measure,
                severity="critical" if severity == FAIL else "warning",
                meta={"check": f"quality.{check}", "level": severity},
                **bound,
            )
        )
    return out


def run_suites(spark, catalog, interactions, measures: Mapping[str, float | None], cfg: UnisemConfig, docs_dir: Path,
               run_name: str | None = None):
    """Validate the three suites, building the Data Docs site in ``docs_dir``; returns one outcome per suite.

    ``run_name`` (the pipeline run id) names the validations in Data Docs. The site is made readable offline
    afterwards (``offline_data_docs``)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    import pandas as pd

    context = _context(docs_dir)
    sources = {"spark": context.data_sources.add_spark(name="spark"), "pandas": context.data_sources.add_pandas(name="pandas")}
    # The measures are one small row already on the driver: validated with pandas, not a Spark job per metric.
    measures_df = pd.DataFrame([{k: float(v) for k, v in measures.items() if v is not None}])
    plan = [
        ("catalog_text_quality", "spark", catalog, _catalog_suite(cfg)),
        ("interaction_log", "spark", interactions, _interaction_suite(interactions.columns)),
        (CHECKS_SUITE, "pandas", measures_df, _checks_suite(cfg, measures)),
    ]
    outcomes = []
    for name, engine, frame, expectations in plan:
        asset = sources[engine].add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_checkpoint",
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
                result_format={"result_format": "SUMMARY"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame},
                                run_id=RunIdentifier(run_name=run_name, run_time=datetime.now(timezone.utc))
                                if run_name else None)  # an explicit time: GX would parse a name like
                                # 2026-12-01T12-38-26 as a date with offset -38:26 and crash
        failed = [r for run in result.run_results.values() for r in run.results if not r.success]
        outcomes.append(
            SuiteOutcome(
                suite=name,
                success=bool(result.success),
                evaluated=sum(len(run.results) for run in result.run_results.values()),
                failed_critical=sum(1 for r in failed if str(r.expectation_config.severity.value) == "critical"),
                failed_warning=sum(1 for r in failed if str(r.expectation_config.severity.value) == "warning"),
                failures=tuple(_failure(name, r) for r in failed),
            )
        )
    offline_data_docs(docs_dir)
    return outcomes


# Tags that make a browser fetch from the network: stylesheets, scripts, fonts, images.
_REMOTE_TAG = re.compile(
    r"""<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^>]*>|<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^>]*>\s*</script>"""
    r"""|<img\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^>]*>""",
    re.I,
)
# Replaces the CDN's Bootstrap and GX's own styles with enough to read the tables.
_OFFLINE_STYLE = (
    "<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px} .collapse:not(.show){display:block}"
    ".d-none{display:block!important} .fade{opacity:1}</style>"
)


def offline_data_docs(docs_dir: Path) -> int:
    """Strip the network assets from every page of a Data Docs site (pipelines run without internet; GX's
    pages stay blank waiting for them) and add a small inline stylesheet; returns the pages changed."""
    changed = 0
    for page in Path(docs_dir).rglob("*.html"):
        text = page.read_text(errors="replace")
        stripped = _REMOTE_TAG.sub("", text)
        if stripped != text:
            stripped = stripped.replace("</head>", _OFFLINE_STYLE + "</head>", 1)
            page.write_text(stripped)
            changed += 1
    return changed
