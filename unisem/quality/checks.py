"""Thresholded checks over the gate's measures and the verdict they add up to.

Every ``min_*`` / ``max_*`` pair in ``QualityConfig`` is one check on the measure of the same name without its
prefix (``max_top1pct_share`` checks the measure ``top1pct_share``). A pair ``[warn, fail]`` yields two levels;
each level is reported on its own, so the verdict file shows every threshold with its severity.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple

from unisem.config import QualityConfig

PASS, WARN, FAIL = "pass", "warn", "fail"


class CheckResult(NamedTuple):
    check: str  # the config key, e.g. "max_html_share"
    measure: str  # the measure it reads, e.g. "html_share"
    severity: str  # "warn" or "fail": what crossing this threshold does
    threshold: float
    observed: float | None  # None: not measurable this run (e.g. drift without a baseline)
    passed: bool

    def to_dict(self) -> dict:
        return self._asdict()


def is_maximum(check: str) -> bool:
    """``max_*`` checks trip above their threshold, ``min_*`` ones below it: the one place that says so."""
    return check.startswith("max_")


def threshold_checks(quality: QualityConfig) -> list[tuple[str, str, str, float]]:
    """``(check, measure, severity, threshold)`` for every level of every check in the config."""
    out = []
    for f in dataclasses.fields(quality):
        value = getattr(quality, f.name)
        if not f.name.startswith(("min_", "max_")) or not isinstance(value, tuple):
            continue
        measure = f.name[4:]
        warn, fail = value
        out.append((f.name, measure, WARN, float(warn)))
        out.append((f.name, measure, FAIL, float(fail)))
    return out


def evaluate_checks(quality: QualityConfig, measures: Mapping[str, float | None]) -> list[CheckResult]:
    """Compare each measure with its thresholds; an unmeasured one (None) passes and says so (observed None)."""
    results = []
    for check, measure, severity, threshold in threshold_checks(quality):
        if measure not in measures:
            raise KeyError(f"quality.{check}: the gate computes no measure named {measure!r}")
        observed = measures[measure]
        if observed is None or (isinstance(observed, float) and math.isnan(observed)):
            passed, observed = True, None
        else:
            observed = float(observed)
            passed = observed <= threshold if is_maximum(check) else observed >= threshold
        results.append(CheckResult(check, measure, severity, threshold, observed, bool(passed)))
    return results


def verdict(results: list[CheckResult]) -> str:
    """fail if any fail-level threshold is crossed, else warn if any warn-level one is, else pass."""
    crossed = {r.severity for r in results if not r.passed}
    return FAIL if FAIL in crossed else WARN if WARN in crossed else PASS


def failing_first(results: list[CheckResult]) -> list[CheckResult]:
    """Failed fail-level checks, then failed warn-level ones, then the rest, each in config order."""
    rank = {(False, FAIL): 0, (False, WARN): 1}
    return sorted(results, key=lambda r: rank.get((r.passed, r.severity), 2))
