"""The data-quality gate: measure, check, decide pass / warn / fail, and write the evidence atomically.

``out_dir`` receives ``verdict.json`` (overall verdict; every threshold with its observed value, severity
and outcome; all measures), ``report.html`` with its plots, and the Great Expectations Data Docs site in
``data_docs/``. A run that passes or warns becomes the drift baseline for the next one; a failed run never
does, so one bad night cannot make the next bad night look normal.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from unisem.atomic import atomic_dir
from unisem.config import UnisemConfig
from unisem.data.contract import DataContractError
from unisem.progress import say
from unisem.quality.checks import FAIL, PASS, WARN, CheckResult, evaluate_checks, failing_first, verdict as decide

VERDICT_FILE = "verdict.json"
REPORT_FILE = "report.html"
DATA_DOCS_DIR = "data_docs"
EXIT_CODES = {PASS: 0, WARN: 0, FAIL: 3}


class GateResult(NamedTuple):
    verdict: str  # "pass" | "warn" | "fail"
    verdict_path: Path
    report_path: Path
    data_docs_path: Path  # the Data Docs site's index.html
    checks: list[CheckResult]
    measures: dict[str, float | None]

    @property
    def exit_code(self) -> int:
        """0 pass or warn, 3 fail: what the CLI and the spark-submit job exit with."""
        return EXIT_CODES[self.verdict]


def run_gate(
    cfg: UnisemConfig, catalog: Path, interactions: Path, out_dir: Path, home: Path | None = None
) -> GateResult:
    """Validate ``catalog`` and ``interactions`` (contract Parquet) and write the gate outputs to ``out_dir``.

    Raises ``DataContractError`` (naming the file) for input that cannot be read at all; bad *data* is not
    an exception but a failed verdict.
    """
    from unisem.data.features import read_inputs
    from unisem.data.spark import resolve_master, spark_error_summary, spark_errors, spark_session
    from unisem.quality.baseline import drift_measures, load_baseline, make_baseline, save_baseline
    from unisem.quality.expectations import run_suites
    from unisem.quality.measures import profile
    from unisem.quality.report import write_plots, write_report

    catalog, interactions, out_dir = Path(catalog), Path(interactions), Path(out_dir)
    spark = spark_session(resolve_master(None, cfg.orchestration.spark_master))
    inputs = read_inputs(spark, catalog, interactions)
    baseline = load_baseline(home)
    started = time.perf_counter()
    say(__name__, f"validate: measuring {catalog.name} and {interactions.name} on Spark")
    try:
        prof = profile(inputs.catalog, inputs.interactions, cfg)
    except spark_errors() as exc:
        raise DataContractError(f"{catalog} / {interactions}: cannot measure the inputs: {spark_error_summary(exc)}") from exc
    if not prof.measures["catalog_rows"]:
        raise DataContractError(f"{catalog}: the catalog is empty")
    if not prof.measures["interactions"]:
        raise DataContractError(f"{interactions}: there are no interactions")
    timings = {"measures": time.perf_counter() - started}
    measures = {**prof.measures, **drift_measures(baseline, prof.measures, prof.item_frequency)}
    checks = evaluate_checks(cfg.quality, measures)
    verdict = decide(checks)
    accepted = verdict != FAIL
    say(__name__, f"validate: measures in {timings['measures']:.0f}s ({verdict}); "
                  "running the Great Expectations suites")
    with atomic_dir(out_dir) as tmp:
        try:
            # Data Docs name each validation by the run (the run folder holding out_dir), not "__none__".
            suites = [s.to_dict() for s in run_suites(
                spark, inputs.catalog, inputs.interactions, measures, cfg, tmp / DATA_DOCS_DIR,
                run_name=Path(out_dir).resolve().parent.name,
            )]
        except spark_errors() as exc:
            raise DataContractError(f"{catalog} / {interactions}: Great Expectations could not validate: {spark_error_summary(exc)}") from exc
        timings["great_expectations"] = time.perf_counter() - started - timings["measures"]
        plots = write_plots(tmp, prof.item_frequency, prof.sequence_lengths, prof.title_lengths)
        source = {"catalog": str(catalog), "interactions": str(interactions)}
        write_report(tmp / REPORT_FILE, verdict, checks, measures, plots, suites, source)
        ordered = failing_first(checks)
        record = {
            "verdict": verdict,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": source,
            "failed": sorted({c.check for c in checks if not c.passed and c.severity == FAIL}),
            "warnings": sorted({c.check for c in checks if not c.passed and c.severity == WARN}),
            "checks": [c.to_dict() for c in ordered],
            "measures": measures,
            "great_expectations": suites,
            "baseline": {"compared_with": baseline.get("source") if baseline else None, "updated": accepted},
            "report": REPORT_FILE,
            # Where the time went (seconds), for capacity planning; see benchmarks/gate_scaling.py.
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "data_docs": f"{DATA_DOCS_DIR}/index.html",
        }
        (tmp / VERDICT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    if accepted:
        save_baseline(make_baseline(measures, prof.item_frequency, str(out_dir)), home)
    return GateResult(verdict, out_dir / VERDICT_FILE, out_dir / REPORT_FILE, out_dir / DATA_DOCS_DIR / "index.html",
                      checks, measures)
