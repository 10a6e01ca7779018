"""Trainer configs: YAML file + --set overrides + options, for TRL's configs and any dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.core.errors import CaiError
from cai.train.common.config import (
    build_config,
    config_to_dict,
    load_config_file,
    parse_set,
    training_defaults,
)


@dataclass
class ToyConfig:
    """Stands in for the PPO engineer's own dataclass: the loader is generic."""

    learning_rate: float = 1e-3
    max_steps: int = -1
    kl_coef: float = 0.05
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])
    run_name: str | None = None


def test_precedence_defaults_file_options_set(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("learning_rate: 1e-5\nmax_steps: 10\nkl_coef: 0.2\nrun_name: from-file\n")
    cfg = build_config(
        ToyConfig,
        config_file=cfg_file,
        options={"max_steps": 20, "kl_coef": None},
        overrides=["kl_coef=0.3", "loss_type=[ipo, sigmoid]"],
        defaults={"learning_rate": 1.0, "run_name": "default"},
    )
    # YAML 1.1 reads 1e-5 as a string; the float field gets a float.
    assert cfg.learning_rate == 1e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.max_steps == 20  # option beats file
    assert cfg.kl_coef == 0.3  # --set beats file; a None option is "not passed"
    assert cfg.loss_type == ["ipo", "sigmoid"]
    assert cfg.run_name == "from-file"  # file beats cai default


def test_unknown_key_in_file_names_file_key_and_closest(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("learning_rat: 1.0e-5\n")
    with pytest.raises(CaiError) as err:
        build_config(ToyConfig, config_file=cfg_file)
    msg = str(err.value)
    assert str(cfg_file) in msg and "'learning_rat'" in msg and "did you mean 'learning_rate'" in msg
    assert "\n" not in msg


def test_unknown_key_in_set_and_bad_set_syntax():
    with pytest.raises(CaiError, match="--set kl_coeff=1: unknown key 'kl_coeff'.*'kl_coef'"):
        build_config(ToyConfig, overrides=["kl_coeff=1"])
    with pytest.raises(CaiError, match="expected KEY=VALUE"):
        parse_set("kl_coef")


def test_bad_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(CaiError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_config_file(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(CaiError, match="expected a mapping"):
        load_config_file(lst)
    with pytest.raises(CaiError, match="no such config file"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert build_config(ToyConfig, config_file=tmp_path / "empty.yaml") == ToyConfig()


def test_trl_dpo_config_keys_pass_through(tmp_path):
    from trl import DPOConfig

    cfg_file = tmp_path / "dpo.yaml"
    cfg_file.write_text("beta: 0.25\nloss_type: robust\nlabel_smoothing: 0.1\n"
                        "precompute_ref_log_probs: true\n")
    cfg = build_config(DPOConfig, config_file=cfg_file, overrides=["learning_rate=5e-7"],
                       options={"max_steps": 3}, defaults=training_defaults(DPOConfig, tmp_path / "out"))
    assert (cfg.beta, cfg.loss_type, cfg.label_smoothing, cfg.precompute_ref_log_probs) == (
        0.25, ["robust"], 0.1, True)
    assert cfg.learning_rate == 5e-7 and cfg.max_steps == 3
    assert cfg.report_to in ([], "none", ["none"]) and cfg.bf16 is False
    changed = config_to_dict(cfg, only_changed=True)
    assert changed["beta"] == 0.25 and changed["loss_type"] == ["robust"] and "adam_beta1" not in changed


def test_trl_post_init_error_is_one_line(tmp_path):
    from trl import DPOConfig

    with pytest.raises(CaiError) as err:
        build_config(DPOConfig, overrides=["loss_weights=[1.0, 2.0]"],
                     defaults=training_defaults(DPOConfig, tmp_path))
    assert "loss_weights" in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=80, deadline=None)
@given(key=st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
       value=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                       st.text(max_size=20), st.lists(st.integers(), max_size=4), st.none()))
def test_parse_set_round_trips_yaml_values(key, value):
    import yaml

    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
    k, v = parse_set(f"{key}={dumped}")
    assert k == key and v == value
