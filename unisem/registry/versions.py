"""What a registered model was made from, as content digests: the data version and the code version.

Kept apart from the MLflow calls (``tracking``) because they are pure file and git reads: the pyfunc's
artifact manifest, the run's ``data_version`` tag and the dataset digests all use them, with or without a
tracking store.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

# Files that describe how a folder was written rather than what it holds; excluded from data versions.
_IGNORED_NAMES = {"_SUCCESS", "manifest.json"}


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        and p.name not in _IGNORED_NAMES and not p.name.endswith(".crc")
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _row_digests(table) -> list[str]:
    """sha256 of each row as canonical JSON (keys sorted), so column order and row order do not matter."""
    return sorted(
        hashlib.sha256(json.dumps(row, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()
        for row in table.to_pylist()
    )


def table_digest(files: Iterable[Path]) -> str:
    """A sha256 over the sorted rows of the Parquet part files of one table, with its column names and types.

    Spark writes the same rows into a different number of part files, with different names, compression
    and row order from one run to the next; none of that is the data, so none of it enters the digest.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(f"{f}: cannot read as Parquet to compute a data version: {exc}") from exc
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    schema = sorted(f"{field.name}:{field.type}" for field in table.schema)
    rows = _row_digests(table)
    h = hashlib.sha256()
    h.update(json.dumps({"schema": schema, "rows": len(rows)}).encode())
    for d in rows:
        h.update(d.encode())
    return h.hexdigest()


def data_version(paths: Iterable[str | Path]) -> str:
    """A sha256 over the contents of the given files and folders: the same data give the same version.

    Parquet is digested by content (``table_digest``: sorted rows, column names and types), one table per
    folder of part files, so reruns and part-file layouts do not change the version; other files by their
    bytes. Within a folder the table and file digests are sorted, so names and listing order do not matter
    either. Bookkeeping files (``manifest.json``, ``_SUCCESS``, ``.crc``, hidden files) are left out because
    they record how a folder was written, not what it holds.
    """
    h = hashlib.sha256()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: cannot compute a data version, the path does not exist")
        tables: dict[Path, list[Path]] = {}
        digests = []
        for f in _files(path):
            if f.suffix == ".parquet":
                # part files of one table share a folder; a lone .parquet file beside them is its own table
                tables.setdefault(f if f.parent == path or path.is_file() else f.parent, []).append(f)
            else:
                digests.append(file_sha256(f))
        digests += [table_digest(sorted(files)) for files in tables.values()]
        digests.sort()
        h.update(f"{len(digests)}\n".encode())
        for d in digests:
            h.update(d.encode())
    return h.hexdigest()


def code_version() -> str:
    """The git commit of the unisem sources (with ``-dirty`` for local changes), or ``unknown`` outside git."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", "unisem"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "") if sha else "unknown"
