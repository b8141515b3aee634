"""The profile of the last accepted run, kept small (a few numbers and a 32-bucket histogram) under
UNISEM_HOME, so tonight's data can be compared with what the current models were trained on."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from unisem.atomic import write_text_atomic
from unisem.home import unisem_home
from unisem.quality import distribution as dist

BASELINE_FILE = "baseline.json"


def baseline_path(home: Path | None = None) -> Path:
    return (home or unisem_home()) / "quality" / BASELINE_FILE


def load_baseline(home: Path | None = None) -> dict | None:
    """The last accepted profile, or None before the first accepted run. A damaged file is an error."""
    path = baseline_path(home)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        float(data["catalog_items"]), float(data["users"]), list(data["popularity_buckets"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a quality baseline ({exc}); delete it to start a new baseline") from exc
    return data


def make_baseline(measures: Mapping[str, float | None], item_frequency: Mapping[int, int], source: str) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "catalog_items": measures["catalog_items"],
        "users": measures["users"],
        "interactions": measures["interactions"],
        "popularity_buckets": dist.log2_bucket_shares(dist.histogram(item_frequency)),
    }


def save_baseline(baseline: dict, home: Path | None = None) -> Path:
    return write_text_atomic(baseline_path(home), json.dumps(baseline, indent=2, sort_keys=True))


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
