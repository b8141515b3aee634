"""What identifies one pipeline run: its id, its config file, overrides and typed values, and its home folder.

Every task of a DAG run rebuilds the same ``RunSpec`` from the DAG params and the logical date, so tasks
pass nothing but paths between them and a task can be re-run alone. The run id is derived from the logical
date, which is what makes a rerun of the same date overwrite that date's outputs instead of adding new ones.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from unisem.config import UnisemConfig, load_config
from unisem.home import RunLayout, unisem_home

# DAG param -> the config key it sets, as a typed value taken verbatim (never re-read as YAML text: a path
# such as ``shop #2/catalog.parquet`` must not become ``shop``); an empty param leaves the config's value.
PARAM_OVERRIDES: dict[str, str] = {
    "catalog": "data.catalog",
    "interactions": "data.interactions",
    "spark_master": "orchestration.spark_master",
    "ray_address": "orchestration.ray_address",
    "mlflow_uri": "registry.tracking_uri",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunSpec(NamedTuple):
    run_id: str
    config_path: str | None
    overrides: tuple[str, ...]  # ``KEY=VALUE`` texts, values read as YAML (``--set``)
    home: str
    values: tuple[tuple[str, str], ...] = ()  # (config key, value) set verbatim, after the overrides

    def config(self) -> UnisemConfig:
        return load_config(self.config_path or None, self.overrides, dict(self.values))

    def layout(self) -> RunLayout:
        return RunLayout.for_run(self.run_id, Path(self.home))

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "config_path": self.config_path, "overrides": list(self.overrides),
                "home": self.home, "values": dict(self.values)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        return cls(str(d["run_id"]), d.get("config_path") or None, tuple(d.get("overrides") or ()), str(d["home"]),
                   tuple((str(k), str(v)) for k, v in (d.get("values") or {}).items()))

    def config_args(self) -> list[str]:
        """``--config FILE --set K=V ...``: the config part of any ``unisem`` command (and of the jobs/).

        The typed values go as ``--set`` too, after the overrides: each is a plain-string setting, which
        the loader takes as written (``loader.parse_override``), so a path arrives in the job unchanged.
        """
        args = ["--config", self.config_path] if self.config_path else []
        for o in (*self.overrides, *(f"{k}={v}" for k, v in self.values)):
            args += ["--set", o]
        return args

    def without(self, key: str) -> "RunSpec":
        """The same spec with no override or value for the config ``key`` (the config file's value holds)."""
        return self._replace(overrides=tuple(o for o in self.overrides if o.split("=", 1)[0].strip() != key),
                             values=tuple((k, v) for k, v in self.values if k != key))

    def cli_args(self) -> list[str]:
        """The same spec as ``unisem stage`` arguments (the entry point of a Ray Job)."""
        return ["--run-id", self.run_id, "--home", self.home, *self.config_args()]


def run_id_for(logical_date: datetime | str) -> str:
    """A filesystem-safe run id from a logical date: ``2026-11-28T00-00-00`` (UTC)."""
    if isinstance(logical_date, str):
        text = logical_date.strip()
        try:
            logical_date = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            safe = _UNSAFE.sub("-", text).strip("-.")
            if not safe:
                raise ValueError(f"cannot make a run id from {text!r}")
            return safe
    if logical_date.tzinfo is not None:
        logical_date = logical_date.astimezone(timezone.utc)
    return logical_date.strftime("%Y-%m-%dT%H-%M-%S")


def overrides_from_params(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``overrides`` DAG param: ``KEY=VALUE`` texts, as ``--set`` takes them."""
    extra = params.get("overrides") or ()
    if isinstance(extra, str):
        extra = [extra]
    return tuple(str(o) for o in extra if str(o).strip())


def values_from_params(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """One typed value per non-empty location param (``PARAM_OVERRIDES``), taken verbatim; they win over
    the ``overrides`` param."""
    out = []
    for name, key in PARAM_OVERRIDES.items():
        value = params.get(name)
        if value is not None and str(value).strip():
            out.append((key, str(value).strip()))
    return tuple(out)


def spec_from_params(
    params: Mapping[str, Any], logical_date: datetime | str | None, fallback_run_id: str = "", home: Path | None = None
) -> RunSpec:
    """The spec of a DAG run. Manual Airflow 3 runs may have no logical date; their Airflow run id is used."""
    if logical_date is None:
        if not fallback_run_id:
            raise ValueError("a run needs a logical date or a run id")
        run_id = run_id_for(fallback_run_id)
    else:
        run_id = run_id_for(logical_date)
    config_path = str(params.get("config_file") or "").strip() or None
    return RunSpec(run_id, config_path, overrides_from_params(params), str((home or unisem_home()).resolve()),
                   values_from_params(params))


def make_spec(run_id: str, config_path: str | None = None, overrides: Sequence[str] = (),
              home: Path | None = None) -> RunSpec:
    return RunSpec(run_id, config_path or None, tuple(overrides), str((home or unisem_home()).resolve()))


def spec_from_context(context: Mapping[str, Any], prefix: str = "") -> RunSpec:
    """The spec of the Airflow task running with ``context`` (its params, logical date and run id).

    ``prefix`` keeps another DAG's runs (e.g. ``quality-``) out of the nightly run folders of the same date.
    """
    spec = spec_from_params(context["params"], context.get("logical_date"), str(context.get("run_id") or ""))
    return spec._replace(run_id=prefix + spec.run_id) if prefix else spec
