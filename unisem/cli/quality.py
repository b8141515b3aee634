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
    import json
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.quality.gate import gate_reasons, run_gate

    cfg = config_from_args(args)
    # Every path absolute before Spark starts, so nothing fails late on a relative one.
    catalog, interactions, out = (Path(p).expanduser().resolve() for p in (args.catalog, args.interactions, args.out))
    result = run_gate(cfg, catalog, interactions, out, home=Path(args.home).expanduser().resolve() if args.home else None)
    crossed = [c for c in result.checks if not c.passed]
    print(f"quality gate: {result.verdict.upper()} ({len(crossed)} thresholds crossed, "
          f"{len(result.expectations_failed)} expectations failed)")
    for reason in gate_reasons(json.loads(Path(result.verdict_path).read_text()), examples=True):
        print(f"  {reason}")
    if result.baseline:
        print(f"baseline: {result.baseline['note']}")
    print(f"verdict: {result.verdict_path}\nreport:  {result.report_path}")
    return result.exit_code
