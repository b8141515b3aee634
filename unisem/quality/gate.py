"""The data-quality gate: measure, check, decide pass / warn / fail, and write the evidence atomically.

``out_dir`` receives ``verdict.json`` (overall verdict; every threshold with its observed value, severity
and outcome; all measures), ``report.html`` with its plots, and the Great Expectations Data Docs site in
``data_docs/``. A run that passes or warns becomes the drift baseline for the next run of the same dataset
(``data.name``, else the input paths); a failed run never does, so one bad night cannot make the next bad
night look normal.

The verdict adds up the thresholds and the Great Expectations row-level suites by one rule: a failed
expectation counts like a crossed threshold of its severity (``critical`` fails, ``warning`` warns), so no
failed check can hide behind a PASS. Every crossed check and failed expectation comes with up to ten
example rows (``offenders``) in the verdict and the report.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from unisem.atomic import atomic_dir
from unisem.config import UnisemConfig
from unisem.data.contract import DataContractError
from unisem.progress import say
from unisem.quality.checks import (
    FAIL,
    PASS,
    WARN,
    CheckResult,
    evaluate_checks,
    failing_first,
    is_maximum,
    verdict as decide,
)

VERDICT_FILE = "verdict.json"
REPORT_FILE = "report.html"
DATA_DOCS_DIR = "data_docs"
EXIT_CODES = {PASS: 0, WARN: 0, FAIL: 3}


def expectation_key(failure: dict) -> str:
    """How a failed expectation is named among the verdict's ``failed`` / ``warnings`` (beside config keys)."""
    return f"expectation:{failure['suite']}/{failure['expectation']}"


def expectation_level(failure: Mapping[str, Any]) -> str:
    """What a failed expectation does to the verdict: ``critical`` fails, any other severity warns."""
    return FAIL if failure.get("severity") == "critical" else WARN


def combined_verdict(threshold_verdict: str, expectations_failed: list[dict]) -> str:
    """The thresholds' verdict, made worse by failed expectations (``expectation_level``)."""
    levels = {expectation_level(f) for f in expectations_failed}
    if threshold_verdict == FAIL or FAIL in levels:
        return FAIL
    if threshold_verdict == WARN or levels:
        return WARN
    return PASS


def _examples(rows: Any) -> str:
    if not rows:
        return ""
    key = "user_id" if "user_id" in rows[0] else "item_id"
    return f"; e.g. {key} " + ", ".join(repr(r[key]) for r in rows[:3])


def gate_reasons(verdict: Mapping[str, Any], examples: bool = False) -> list[str]:
    """Why the gate decided what it did, from a ``verdict.json`` record: each check that tripped (its worst
    level only), then each failed expectation, failures first; with ``examples``, up to three offending ids.

    Reads the record's ``checks`` (``CheckResult.to_dict()`` per threshold level), ``expectations_failed``
    and ``offenders``; the direction of a check comes from ``checks.is_maximum``, the level of a failed
    expectation from ``expectation_level``, so the reasons can never disagree with the verdict.
    """
    offenders = verdict.get("offenders") if examples and isinstance(verdict.get("offenders"), Mapping) else {}
    worst: dict[str, Mapping[str, Any]] = {}
    for check in verdict.get("checks") or ():
        if not isinstance(check, Mapping) or check.get("passed", True):
            continue
        name = str(check.get("check"))
        if name not in worst or (check.get("severity") == FAIL and worst[name].get("severity") != FAIL):
            worst[name] = check
    out: list[tuple[int, str]] = []
    for name, check in worst.items():
        severity = str(check.get("severity"))
        observed, threshold = check.get("observed"), check.get("threshold")
        side = "above the maximum" if is_maximum(name) else "below the minimum"
        shown = f"{observed:.4g}" if isinstance(observed, (int, float)) else str(observed)
        out.append((0 if severity == FAIL else 1, f"{severity}: {check.get('measure', name)} = {shown}, {side} "
                    f"{threshold} ({name})" + _examples(offenders.get(name))))
    for failure in verdict.get("expectations_failed") or ():
        if isinstance(failure, Mapping):
            level = expectation_level(failure)
            out.append((0 if level == FAIL else 1, f"{level}: expectation {failure.get('suite')}/"
                        f"{failure.get('expectation')} failed on {failure.get('unexpected_count')} rows"
                        + _examples(offenders.get(failure.get("expectation")))))
    return [text for _, text in sorted(out, key=lambda x: x[0])]


class GateResult(NamedTuple):
    verdict: str  # "pass" | "warn" | "fail"
    verdict_path: Path
    report_path: Path
    data_docs_path: Path  # the Data Docs site's index.html
    checks: list[CheckResult]
    measures: dict[str, float | None]
    expectations_failed: list[dict] = []
    offenders: dict[str, list[dict]] = {}
    baseline: dict = {}

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
    from unisem.data.inputs import read_inputs
    from unisem.data.spark import resolve_master, spark_error_summary, spark_errors, spark_session
    from unisem.quality.baseline import (
        baseline_summary,
        dataset_identity,
        drift_measures,
        load_baseline,
        make_baseline,
        save_baseline,
    )
    from unisem.quality.expectations import CHECKS_SUITE, run_suites
    from unisem.quality.measures import profile
    from unisem.quality.offenders import find_offenders
    from unisem.quality.report import write_plots, write_report

    # Absolute first: Great Expectations wants an absolute Data Docs folder, and the record should not
    # depend on the directory the command ran in.
    catalog, interactions, out_dir = (Path(p).expanduser().resolve() for p in (catalog, interactions, out_dir))
    dataset = dataset_identity(cfg.data.name, catalog, interactions)
    baseline = load_baseline(home, dataset)
    spark = spark_session(resolve_master(None, cfg.orchestration.spark_master))
    inputs = read_inputs(spark, catalog, interactions)
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
    say(__name__, f"validate: measures in {timings['measures']:.0f}s; running the Great Expectations suites")
    with atomic_dir(out_dir) as tmp:
        try:
            # Data Docs name each validation by the run (the run folder holding out_dir), not "__none__".
            outcomes = run_suites(spark, inputs.catalog, inputs.interactions, measures, cfg, tmp / DATA_DOCS_DIR,
                                  run_name=Path(out_dir).resolve().parent.name)
        except spark_errors() as exc:
            raise DataContractError(f"{catalog} / {interactions}: Great Expectations could not validate: {spark_error_summary(exc)}") from exc
        timings["great_expectations"] = time.perf_counter() - started - timings["measures"]
        suites = [s.to_dict() for s in outcomes]
        # gate_checks restates the thresholds (already checks); the row-level suites add what they alone see.
        expectations_failed = [f.to_dict() for s in outcomes if s.suite != CHECKS_SUITE for f in s.failures]
        verdict = combined_verdict(decide(checks), expectations_failed)
        accepted = verdict != FAIL
        crossed = [c.check for c in failing_first(checks) if not c.passed]
        try:
            offenders = find_offenders(inputs.catalog, inputs.interactions, cfg,
                                       [*crossed, *(f["expectation"] for f in expectations_failed)])
        except spark_errors() as exc:
            raise DataContractError(f"{catalog} / {interactions}: cannot list offending rows: {spark_error_summary(exc)}") from exc
        timings["offenders"] = time.perf_counter() - started - timings["measures"] - timings["great_expectations"]
        plots = write_plots(tmp, prof.item_frequency, prof.sequence_lengths, prof.title_lengths)
        source = {"catalog": str(catalog), "interactions": str(interactions)}
        compared = {**baseline_summary(baseline, dataset), "updated": accepted}
        write_report(tmp / REPORT_FILE, verdict, checks, measures, plots, suites, source,
                     baseline=compared, expectations_failed=expectations_failed, offenders=offenders)
        ordered = failing_first(checks)
        record = {
            "verdict": verdict,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset": dataset,
            "inputs": source,
            "failed": sorted({c.check for c in checks if not c.passed and c.severity == FAIL}
                             | {expectation_key(f) for f in expectations_failed if expectation_level(f) == FAIL}),
            "warnings": sorted({c.check for c in checks if not c.passed and c.severity == WARN}
                               | {expectation_key(f) for f in expectations_failed if expectation_level(f) == WARN}),
            "checks": [c.to_dict() for c in ordered],
            "measures": measures,
            "great_expectations": suites,
            "expectations_failed": expectations_failed,
            "offenders": offenders,
            "baseline": compared,
            "report": REPORT_FILE,
            # Where the time went (seconds), for capacity planning; see benchmarks/gate_scaling.py.
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "data_docs": f"{DATA_DOCS_DIR}/index.html",
        }
        (tmp / VERDICT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    if accepted:
        save_baseline(make_baseline(measures, prof.item_frequency, str(out_dir), dataset), home)
    return GateResult(verdict, out_dir / VERDICT_FILE, out_dir / REPORT_FILE, out_dir / DATA_DOCS_DIR / "index.html",
                      checks, measures, expectations_failed, offenders, compared)
