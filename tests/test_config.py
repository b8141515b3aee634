from __future__ import annotations

import dataclasses

import pytest

from unisem.cli import main
from unisem.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    UnisemConfig,
    load_config,
    replace_in,
    to_dict,
)


def test_default_yaml_matches_the_dataclass_defaults():
    assert to_dict(load_config(DEFAULT_CONFIG_PATH)) == to_dict(UnisemConfig())


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.lr = 1.0  # type: ignore[misc]


def test_overrides_are_typed_from_yaml():
    cfg = load_config(None, ["training.lr=0.01", "quantizer.encoder_hidden=[128, 64]", "model.variant=id-only"])
    assert cfg.training.lr == 0.01
    assert cfg.quantizer.encoder_hidden == (128, 64)
    assert cfg.model.variant == "id-only"


def test_int_given_for_float_is_accepted_but_not_the_reverse():
    assert load_config(None, ["training.lr=1"]).training.lr == 1.0
    with pytest.raises(ConfigError, match="training.batch_size: expected an integer"):
        load_config(None, ["training.batch_size=2.5"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.bogus=1", "unknown key training.bogus"),
        ("nosuch.key=1", "unknown key nosuch"),
        ("model.variant=both", "model.variant: 'both' is not allowed; allowed values: 'unified', 'id-only'"),
        ("model.dropout=1.5", "model.dropout: 1.5 is above the maximum 0.95"),
        ("quantizer.levels=0", "quantizer.levels: 0 is below the minimum 1"),
        ("training.use_gpu=maybe", "training.use_gpu: expected true or false"),
        ("data.demo.items=lots", "data.demo.items: expected an integer"),
        ("training=3", "training: expected a mapping"),
        ("training.lr", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(None, [override])


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


def test_partial_file_keeps_other_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("training:\n  max_epochs: 3\n")
    cfg = load_config(f, ["training.lr=0.002"])
    assert cfg.training.max_epochs == 3 and cfg.training.lr == 0.002
    assert cfg.model == UnisemConfig().model


def test_replace_in_revalidates():
    cfg = replace_in(load_config(), model={"variant": "semantic-only"})
    assert cfg.model.variant == "semantic-only"
    with pytest.raises(ConfigError):
        replace_in(cfg, model={"variant": "nope"})


def test_cli_config_reports_errors_with_exit_code_1(capsys):
    assert main(["config", "--set", "model.variant=x"]) == 1
    assert "model.variant" in capsys.readouterr().err
    assert main(["config", "--set", "training.lr=0.5"]) == 0
    assert "lr: 0.5" in capsys.readouterr().out
