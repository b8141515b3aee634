"""A wheel of the unisem code that is running, with only the serving dependencies, for the registered model.

A registered model has to load where this repository is not: a virtualenv MLflow builds from the model's
``requirements.txt``, a docker image made by ``mlflow models build-docker``, a Spark executor. So the model
carries the exact code that trained it as an installable distribution. It is built here from the imported
package rather than by ``pip wheel .`` because (1) an installed unisem (a docker image, a Ray worker) has no
source tree to build from, and (2) the project's own metadata names the whole pipeline stack (Spark, Ray,
Great Expectations, sentence-transformers), which a model server must not have to install. The version
carries a digest of the code (``0.1.0+c<12 hex>``), so two models trained with different code never share a
wheel name, and the archive is byte-for-byte reproducible (sorted entries, fixed timestamps).
"""
from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Sequence

import unisem

DIST_NAME = "unisem"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: reproducible archives


def package_files(package_dir: Path | None = None) -> list[tuple[str, bytes]]:
    """(archive name, bytes) of every file of the unisem package, sorted; compiled caches left out."""
    root = Path(package_dir or Path(unisem.__file__).parent)
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        files.append((f"{DIST_NAME}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    return files


def code_digest(files: Sequence[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_version(files: Sequence[tuple[str, bytes]]) -> str:
    return f"{unisem.__version__}+c{code_digest(files)[:12]}"


def build_wheel(out_dir: str | Path, requirements: Sequence[str], package_dir: Path | None = None) -> Path:
    """Write ``unisem-<version>-py3-none-any.whl`` into ``out_dir`` and return its path.

    ``requirements`` become its ``Requires-Dist`` (pinned ``name==version`` lines), so installing the wheel
    alone pulls in what serving needs at the versions the model was trained with.
    """
    files = package_files(package_dir)
    version = wheel_version(files)
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {version}",
        "Summary: unisem recommender (serving build: the code of a registered model)",
        "Requires-Python: >=3.11,<3.12",
        *[f"Requires-Dist: {r}" for r in requirements],
        "",
    ]).encode()
    wheel_meta = b"Wheel-Version: 1.0\nGenerator: unisem.registry.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry_points = b"[console_scripts]\nunisem = unisem.cli:main\n"
    entries = [*files, (f"{dist_info}/METADATA", metadata), (f"{dist_info}/WHEEL", wheel_meta),
               (f"{dist_info}/entry_points.txt", entry_points)]
    record = io.StringIO()
    for name, data in entries:
        record.write(f"{name},{_record_hash(data)},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{DIST_NAME}-{version}-py3-none-any.whl"
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
    return path
