"""``unisem features``: the Spark feature job (vocabularies, sequences, splits, item texts)."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    from unisem.cli import add_contract_inputs

    p = subparsers.add_parser(
        "features",
        parents=[common],
        help="build the training inputs (features folder) from a catalog and an interaction log on Spark",
    )
    add_contract_inputs(p)
    p.add_argument("--out", required=True, help="features folder to write (replaced atomically)")
    p.add_argument("--previous", default=None, help="last run's features folder: known ids keep their index")
    p.set_defaults(handler=_features)


def _features(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from unisem.cli import config_from_args
    from unisem.data.dataset import MANIFEST_FILE
    from unisem.data.features import build_features

    cfg = config_from_args(args)
    out = build_features(cfg, Path(args.catalog), Path(args.interactions), Path(args.out),
                         previous=Path(args.previous) if args.previous else None)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    print(f"features: {manifest['items']} items, {manifest['users']} users, "
          f"{manifest['interactions_used']} interactions used -> {out}")
    return 0

