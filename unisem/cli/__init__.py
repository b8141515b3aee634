"""The ``unisem`` command: one subcommand per pipeline stage.

Each stage's subcommands live in their own module (``unisem.cli.<stage>``) exposing
``register(subparsers, common)``; heavy imports stay inside the handlers so ``unisem --help`` is instant.
A handler returns the process exit code: 0 success, 1 error (bad input, bad arguments), 3 failed quality gate.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from unisem.config import ConfigError, UnisemConfig, load_config

# Modules that contribute subcommands, in the order they appear in ``unisem --help``.
STAGE_MODULES: tuple[str, ...] = (
    "unisem.cli.data",
    "unisem.cli.embed",
    "unisem.cli.quality",
    "unisem.cli.features",
    "unisem.cli.train",
    "unisem.cli.evaluate",
    "unisem.cli.registry",
    "unisem.cli.pipeline",
    "unisem.cli.config",
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GATE_FAILED = 3


class _Parser(argparse.ArgumentParser):
    """Bad arguments exit 1 like any other error (argparse would exit 2), so a scheduler sees 0 / 1 / 3 only.

    Subcommand parsers inherit the class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def config_from_args(args: argparse.Namespace) -> UnisemConfig:
    return load_config(args.config, args.overrides or ())


def common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=None, help="YAML config file (default: built-in defaults)")
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set training.lr=0.0005 (repeatable)",
    )
    return common


def add_contract_inputs(p: argparse.ArgumentParser) -> None:
    """--catalog and --interactions: the two data-contract inputs of the Spark jobs (validate, features)."""
    p.add_argument("--catalog", required=True, help="catalog Parquet (data contract)")
    p.add_argument("--interactions", required=True, help="interactions Parquet file or part-file folder")


def build_parser() -> argparse.ArgumentParser:
    # The first docstring line without its reStructuredText literals (argparse prints text as it is).
    parser = _Parser(prog="unisem", description=__doc__.splitlines()[0].replace("``", ""))
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a stage not built yet
                continue
            raise
        module.register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_ERROR
    from unisem.progress import terminal_logging

    terminal_logging()
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"unisem: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, FileNotFoundError) as exc:
        print(f"unisem {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
