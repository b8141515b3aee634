"""``unisem evaluate``: both protocols, slices and diagnostics of a model folder on a features folder."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a model: full ranking + sampled-99, slices, semantic-ID diagnostics",
        description="Rank each user's held-out item with the model under both protocols (full ranking and "
        "sampled negatives), per slice, and print a table; --out also writes metrics.json.",
    )
    p.add_argument("--model", required=True, help="model folder (weights.safetensors, config.json, ...)")
    p.add_argument("--features", required=True, help="features folder built from the same catalog")
    p.add_argument("--split", choices=("valid", "test"), default="test", help="leave-one-out split (default: test)")
    p.add_argument("--out", default=None, help="folder for metrics.json and plots (default: print only)")
    p.add_argument("--batch-size", type=int, default=512, help="users scored per batch (default: 512)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of the table")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.evaluate.saved_model import METRICS_FILE, evaluate_model_dir, format_report

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    cfg = config_from_args(args)
    result = evaluate_model_dir(
        Path(args.model), Path(args.features), cfg, split=args.split, out_dir=args.out, batch_size=args.batch_size
    )
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    if args.out and not args.json:
        print(f"\nwrote {Path(args.out) / METRICS_FILE}")
    return 0
