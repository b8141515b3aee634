"""``unisem validate``: the data-quality gate (exit 0 pass or warn, 3 fail, 1 unreadable input)."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    from unisem.cli import add_contract_inputs

    p = subparsers.add_parser(
        "validate",
        parents=[common],
        help="run the data-quality gate (Spark + Great Expectations) over a catalog and an interaction log",
        description="Writes verdict.json, report.html and data_docs/ into --out. Exit status: 0 pass or warn, "
        "3 fail, 1 error (bad arguments, unreadable input).",
    )
    add_contract_inputs(p)
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--home", default=None, help="UNISEM_HOME holding the drift baseline (default: $UNISEM_HOME)")
    p.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.quality.gate import run_gate

    cfg = config_from_args(args)
    # Every path absolute before Spark starts, so nothing fails late on a relative one.
    catalog, interactions, out = (Path(p).expanduser().resolve() for p in (args.catalog, args.interactions, args.out))
    result = run_gate(cfg, catalog, interactions, out, home=Path(args.home).expanduser().resolve() if args.home else None)
    crossed = [c for c in result.checks if not c.passed]
    print(f"quality gate: {result.verdict.upper()} ({len(crossed)} thresholds crossed, "
          f"{len(result.expectations_failed)} expectations failed)")
    for c in sorted(crossed, key=lambda c: c.severity != "fail"):
        print(f"  {c.severity}: quality.{c.check} observed {c.observed:.6g}, threshold {c.threshold:g}"
              + _examples(result.offenders.get(c.check)))
    for f in result.expectations_failed:
        severity = "fail" if f["severity"] == "critical" else "warn"
        print(f"  {severity}: expectation {f['suite']}/{f['expectation']} ({f['unexpected_count']} rows)"
              + _examples(result.offenders.get(f["expectation"])))
    if result.baseline:
        print(f"baseline: {result.baseline['note']}")
    print(f"verdict: {result.verdict_path}\nreport:  {result.report_path}")
    return result.exit_code


def _examples(rows) -> str:
    if not rows:
        return ""
    key = "user_id" if "user_id" in rows[0] else "item_id"
    return f"; e.g. {key} " + ", ".join(repr(r[key]) for r in rows[:3])
