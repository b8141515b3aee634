"""One YAML file -> one frozen ``UnisemConfig``; see ``schema`` for the sections and ``loader`` for the checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from unisem.config.loader import ConfigError, build, parse_override, read_yaml, set_dotted, to_dict, to_json
from unisem.config.schema import (
    DataConfig,
    DemoConfig,
    EvaluationConfig,
    ModelConfig,
    OrchestrationConfig,
    QualityConfig,
    QuantizerConfig,
    RegistryConfig,
    TextConfig,
    TrainingConfig,
    UnisemConfig,
)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                values: Mapping[str, Any] | None = None) -> UnisemConfig:
    """Read ``path`` (default: the built-in defaults), apply ``key=value`` overrides in order, then ``values``.

    Between the file and the overrides, the service addresses the environment sets
    (``unisem.config.services``) replace the file's; an empty override of one of them is "not given" and
    leaves what the environment or file said. ``values`` (dotted key -> value, e.g. the DAG's path params)
    are set as they are, never parsed: the typed channel for what must arrive verbatim.
    """
    from unisem.config.services import environment_values, is_empty_service_override

    tree: dict[str, Any] = read_yaml(path) if path else {}
    for key, value in environment_values().items():
        set_dotted(tree, key, value)
    given = [parse_override(text, UnisemConfig) for text in overrides]
    for key, value in [*given, *(values or {}).items()]:
        if is_empty_service_override(key, value):
            continue
        set_dotted(tree, key, value)
    return build(UnisemConfig, tree)


def config_from_dict(tree: dict[str, Any]) -> UnisemConfig:
    return build(UnisemConfig, tree)


def replace_in(config: UnisemConfig, **sections: dict[str, Any]) -> UnisemConfig:
    """A copy of ``config`` with some fields of some sections changed, re-validated.

    ``replace_in(cfg, training={"lr": 0.01})`` - used by benchmarks and tests to derive variants.
    """
    tree = to_dict(config)
    for section, values in sections.items():
        if section not in tree:
            raise ConfigError(f"unknown section {section}")
        tree[section].update(values)
    return build(UnisemConfig, tree)


__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "DataConfig",
    "DemoConfig",
    "EvaluationConfig",
    "ModelConfig",
    "OrchestrationConfig",
    "QualityConfig",
    "QuantizerConfig",
    "RegistryConfig",
    "TextConfig",
    "TrainingConfig",
    "UnisemConfig",
    "config_from_dict",
    "load_config",
    "replace_in",
    "to_dict",
    "to_json",
]
