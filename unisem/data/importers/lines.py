"""Reading line-oriented source files (plain or gzipped) with line numbers, for importers.

Every importer error must say where the bad input is, so lines are always read together with their
1-based number, and JSON is parsed per line so a broken line is reported as that line, not as a file.
"""
from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from typing import Any, Iterator

from unisem.data.contract import DataContractError

_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def check_readable(path: str | Path) -> Path:
    """The path, if it is a non-empty file; a clear error naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataContractError(f"{path}: no such file")
    if path.is_dir():
        raise DataContractError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise DataContractError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataContractError(f"{path}: the file is empty")
    return path


def decode_line(raw: bytes, path: Path, number: int) -> str:
    """One line as text; invalid UTF-8 names the line and the column of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataContractError(
            f"{path}: line {number}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
        ) from exc


def first_invalid_utf8_line(path: str | Path) -> None:
    """Raise the ``decode_line`` error of the first line that is not UTF-8, if any (for error messages)."""
    path = Path(path)
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for number, raw in enumerate(fh, start=1):
            decode_line(raw, path, number)


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` for every non-blank line, decompressing gzip transparently (by content)."""
    path = check_readable(path)
    opener = gzip.open if is_gzip(path) else open
    seen = False
    try:
        # Bytes, decoded line by line, so invalid UTF-8 is reported with the line it is on.
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for number, raw in enumerate(fh, start=1):
                text = decode_line(raw, path, number).strip()
                if text:
                    seen = True
                    yield number, text
    except (OSError, EOFError) as exc:  # truncated or corrupt gzip
        raise DataContractError(f"{path}: cannot read: {exc}") from exc
    if not seen:
        raise DataContractError(f"{path}: the file is empty (no non-blank line)")


def parse_record(text: str, path: Path | str, number: int, python_literals: bool = False) -> dict[str, Any]:
    """One JSON object per line; with ``python_literals`` also a Python dict literal (2014 Amazon metadata).

    ``ast.literal_eval`` only accepts literals, so a hostile line cannot run code (never ``eval``).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if not python_literals:
            raise DataContractError(f"{path}: line {number}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc2:
            raise DataContractError(
                f"{path}: line {number}: neither JSON nor a Python dict literal: {exc2.__class__.__name__}: {exc2}"
            ) from exc2
    if not isinstance(value, dict):
        raise DataContractError(f"{path}: line {number}: expected an object, got {type(value).__name__}")
    return value


def records(path: str | Path, python_literals: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    path = Path(path)
    for number, text in numbered_lines(path):
        yield number, parse_record(text, path, number, python_literals)
