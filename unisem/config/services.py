"""Where the Spark master, the Ray cluster and the MLflow server are: one precedence rule, applied on load.

An explicit value (a ``--spark-master`` / ``--ray-address`` / ``--mlflow-uri`` flag, a DAG param, a
``--set`` override) wins; then the deployment's environment (``SPARK_MASTER``, ``RAY_ADDRESS``,
``MLFLOW_TRACKING_URI``); then the config file; then the built-in default. An empty value is "not given" at
every level, so an empty flag or param never hides the environment. ``load_config`` applies the rule, so the
CLI, the DAG and every stage see the same addresses.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

# dotted config key -> the environment variable that beats the config file for it
SERVICE_ENV: dict[str, str] = {
    "orchestration.spark_master": "SPARK_MASTER",
    "orchestration.ray_address": "RAY_ADDRESS",
    "registry.tracking_uri": "MLFLOW_TRACKING_URI",
}


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def environment_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service addresses the environment sets (non-empty only), keyed by their config key."""
    env = os.environ if environ is None else environ
    return {key: env[var].strip() for key, var in SERVICE_ENV.items() if env.get(var, "").strip()}


def is_empty_service_override(key: str, value: Any) -> bool:
    """An override of a service address with an empty value: "not given", so it is skipped."""
    return key in SERVICE_ENV and (value is None or (isinstance(value, str) and not value.strip()))


def resolve(explicit: str | None, env_var: str, configured: str, default: str = "",
            environ: Mapping[str, str] | None = None) -> str:
    """The rule itself for one address: explicit > environment > configured > default (empty = not given)."""
    env = os.environ if environ is None else environ
    for value in (explicit, env.get(env_var), configured, default):
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def explicit_overrides(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``key=value`` overrides for the non-empty ones of ``(config key, value)`` (the flags of ``unisem run``)."""
    return [f"{key}={value.strip()}" for key, value in pairs if value is not None and value.strip()]
