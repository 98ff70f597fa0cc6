"""Config loading: defaults written out, overrides, and one-line errors for typos and wrong types."""

import pytest
import yaml

from ticketlab.config import Config, describe_fields, dump_config, load_config, parse_steps
from ticketlab.errors import TicketlabError


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "train: {lr: 0.5, duration: 300}\n"),
                      ["train.seed=3", "prune.scope=[layer1, fc]", "prune.rewind=2ep"])
    assert cfg.train.lr == 0.5
    assert cfg.train.duration == "300it"  # a bare integer means iterations
    assert cfg.train.seed == 3
    assert cfg.prune.scope == ["layer1", "fc"]
    assert cfg.prune.rewind == "2ep"
    # the resolved config spells out every field and loads back to the same thing
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg
    assert set(yaml.safe_load(dump_config(cfg))) == {"task", "model", "data", "train", "prune", "ssl", "init"}


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(TicketlabError, match=r"unknown config key 'train.lrr' \(did you mean 'train.lr'\?\)"):
        load_config(write(tmp_path, "train: {lrr: 0.1}\n"))
    with pytest.raises(TicketlabError, match="unknown config key 'prun'"):
        load_config(None, ["prun.rate=0.3"])


@pytest.mark.parametrize("text, match", [
    ("train: {lr: fast}\n", "train.lr: expected a number"),
    ("train: {batch_size: 1.5}\n", "train.batch_size: expected an integer"),
    ("train: {deterministic: 1}\n", "train.deterministic: expected true or false"),
    ("prune: {strategy: globl}\n", "did you mean 'global'"),
    ("train: {duration: 3 epochs}\n", "train.duration: expected a step count"),
    ("train: {milestones: [10ep, soon]}\n", r"train.milestones\[1\]: expected a step count"),
    ("model: [1, 2]\n", "model: expected a mapping"),
    ("train: {lr: 0.1\n", "not valid YAML at line"),
    ("prune: {rate: 1.5}\n", r"prune.rate: expected a fraction in \(0, 1\)"),
    ("train: {batch_size: 0}\n", "train.batch_size: expected 1 or more"),
    ("model: {width: 0}\n", "model.width: expected a positive multiplier"),
    ("data: {image_size: -3}\n", "data.image_size: expected 1 or more"),
])
def test_bad_values_name_the_key(tmp_path, text, match):
    with pytest.raises(TicketlabError, match=match) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_exponent_without_a_dot_is_a_number(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 as the string '1e-3'; a config author means the number
    cfg = load_config(write(tmp_path, "train: {lr: 1e-3, weight_decay: 5E-4}\n"), ["train.gamma=2e-1"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.gamma) == (0.001, 0.0005, 0.2)


def test_missing_file():
    with pytest.raises(TicketlabError, match="config file not found"):
        load_config("/nonexistent/config.yaml")


def test_parse_steps():
    assert parse_steps("500it", 7) == 500
    assert parse_steps("2ep", 7) == 14
    assert parse_steps("12", 7) == 12
    with pytest.raises(TicketlabError, match="prune.rewind"):
        parse_steps("2 weeks", 7, key="prune.rewind")


def test_every_field_has_help():
    rows = describe_fields(Config)
    assert len(rows) > 30
    assert all(help_text for _, _, help_text in rows)
