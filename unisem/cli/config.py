"""``unisem config``: show the effective configuration (defaults + file + overrides) as YAML."""
from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("config", parents=[common], help="print the effective configuration")
    p.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    import yaml

    from unisem.cli import config_from_args
    from unisem.config import to_dict

    print(yaml.safe_dump(to_dict(config_from_args(args)), sort_keys=False), end="")
    return 0
