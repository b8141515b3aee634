"""The profile of the last accepted run, kept small (a few numbers and a 32-bucket histogram) under
UNISEM_HOME, so tonight's data can be compared with what the current models were trained on.

One baseline per dataset: drift measured against another dataset's profile is noise that fails good runs,
so the file is keyed by the dataset's identity (``data.name``, else the resolved input paths). A baseline
written before identities existed (``quality/baseline.json``) names no dataset and is never used.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from unisem.atomic import write_text_atomic
from unisem.home import unisem_home
from unisem.quality import distribution as dist



BASELINES_DIR = "baselines"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def dataset_identity(name: str, catalog: Path, interactions: Path) -> str:
    """``data.name`` when set, else the two resolved input paths: what "the same dataset" means for drift."""
    if name.strip():
        return name.strip()
    return f"{Path(catalog).expanduser().resolve()} + {Path(interactions).expanduser().resolve()}"


def baseline_path(home: Path | None, dataset: str) -> Path:
    """``<home>/quality/baselines/<readable part>-<hash>.json``: readable, and distinct for distinct identities."""
    digest = hashlib.sha256(dataset.encode("utf-8")).hexdigest()[:12]
    readable = _UNSAFE.sub("-", Path(dataset.split(" + ")[0]).parent.name if " + " in dataset else dataset).strip("-.")[:40]
    return (home or unisem_home()) / "quality" / BASELINES_DIR / f"{readable or 'dataset'}-{digest}.json"


def load_baseline(home: Path | None, dataset: str) -> dict | None:
    """The dataset's last accepted profile, or None before its first accepted run. A damaged file is an error."""
    path = baseline_path(home, dataset)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        float(data["catalog_items"]), float(data["users"]), list(data["popularity_buckets"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a quality baseline ({exc}); delete it to start a new baseline") from exc
    if data.get("dataset") != dataset:
        raise ValueError(f"{path}: a baseline of dataset {data.get('dataset')!r}, not {dataset!r}; delete it")
    return data


def make_baseline(measures: Mapping[str, float | None], item_frequency: Mapping[int, int], source: str,
                  dataset: str) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "source": source,
        "catalog_items": measures["catalog_items"],
        "users": measures["users"],
        "interactions": measures["interactions"],
        "popularity_buckets": dist.log2_bucket_shares(dist.histogram(item_frequency)),
    }


def save_baseline(baseline: dict, home: Path | None = None) -> Path:
    return write_text_atomic(baseline_path(home, baseline["dataset"]), json.dumps(baseline, indent=2, sort_keys=True))


def baseline_summary(baseline: dict | None, dataset: str) -> dict:
    """What the verdict says about the comparison: which accepted run, when, or that there was none yet."""
    if baseline is None:
        return {"dataset": dataset, "compared_with": None, "accepted_at": None,
                "note": f"no baseline yet for dataset {dataset!r}: drift not measured"}
    return {"dataset": dataset, "compared_with": baseline.get("source"), "accepted_at": baseline.get("created"),
            "note": f"drift against the accepted run {baseline.get('source')} of {baseline.get('created')}"}


def drift_measures(baseline: dict | None, measures: Mapping[str, float | None], item_frequency: Mapping[int, int]) -> dict:
    """KL(now || baseline) of the popularity buckets, relative catalog shrinkage and user-count change.

    All None without a baseline: the drift checks then pass and say they were not measured.
    """
    if baseline is None:
        return {"popularity_kl": None, "catalog_shrinkage": None, "user_count_change": None}
    now = dist.log2_bucket_shares(dist.histogram(item_frequency))
    items_then, users_then = float(baseline["catalog_items"]), float(baseline["users"])
    items_now, users_now = float(measures["catalog_items"] or 0), float(measures["users"] or 0)
    return {
        "popularity_kl": dist.kl_divergence(now, baseline["popularity_buckets"]),
        "catalog_shrinkage": max(0.0, 1.0 - items_now / items_then) if items_then else 0.0,
        "user_count_change": abs(users_now / users_then - 1.0) if users_then else 0.0,
    }
