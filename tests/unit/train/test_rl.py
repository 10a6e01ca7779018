"""RLOO and GRPO on the tiny model, with a preference model (or a toy reward) as the reward."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT


@pytest.fixture(scope="module")
def tiny_preference_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A LlamaForSequenceClassification (1 output) on the tiny model's config, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-pm")
    config = AutoConfig.from_pretrained(tiny_model_dir, num_labels=1)
    torch.manual_seed(1)
    model = LlamaForSequenceClassification(config)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _prompts(path: Path, n: int = 8) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"How do I bake bread? ({i})"}) + "\n" for i in range(n)))
    return path


def test_rloo_with_preference_model_and_judge_rewards(tiny_model_dir, tiny_preference_model, tmp_path):
    from safetensors.torch import load_file

    from cai.train.rl import default_rl_config, train_rl

    out = tmp_path / "rloo"
    cfg = default_rl_config("rloo", out, max_steps=2, per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=8, learning_rate=1e-2, logging_steps=1, disable_tqdm=True,
                            save_strategy="no")
    cfg.reward_weights = [1.0, 0.5]
    result = train_rl("rloo", _prompts(tmp_path / "p.jsonl"),
                      rewards=[f"rm:{tiny_preference_model}", f"judge:{tiny_model_dir}"],
                      output_dir=out, model=str(tiny_model_dir), config=cfg)
    m = result.metrics
    assert m["global_step"] == 2 and m["reward_std"] > 0
    assert "rewards/preference_model/mean" in m and 0.0 <= m["rewards/judge/mean"] <= 1.0
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert any(not (before[k] == after[k]).all() for k in before)
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["notes"]["rewards"][0]["path"] == str(tiny_preference_model)
    assert facts["notes"]["rewards"][1]["kind"] == "judge"


def test_grpo_cli_with_toy_reward(tiny_model_dir, tmp_path):
    out = tmp_path / "grpo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "cai", "train", "grpo", "--prompts", str(_prompts(tmp_path / "p.jsonl")),
         "--reward", "toy:contains=bread", "--model", str(tiny_model_dir), "--output", str(out),
         "--max-steps", "2", "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "6",
         "--set", "disable_tqdm=true", "--set", "save_strategy=no"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["trainer"] == "grpo" and facts["metrics"]["global_step"] == 2
    assert facts["config"]["num_generations"] == 2


def test_rl_batch_must_hold_whole_groups(tmp_path):
    from cai.core.errors import CaiError
    from cai.train.rl import check_batch, default_rl_config

    with pytest.raises(CaiError, match="num_generations"):
        check_batch(default_rl_config("rloo", tmp_path, per_device_train_batch_size=3, num_generations=2))


VLLM = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://gpu01:8000",
        "vllm_gpu_memory_utilization": 0.5}
NO_VLLM = pytest.mark.skipif("__import__('importlib.util').util.find_spec('vllm') is not None",
                             reason="checks a machine without vllm")


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_vllm_settings_reach_the_trl_config_without_importing_vllm(method, tmp_path):
    from cai.train.jobs import TrainJob, trainer_config

    cfg = trainer_config(TrainJob(method, ("p.jsonl",), str(tmp_path), settings=VLLM))
    assert (cfg.use_vllm, cfg.vllm_mode, cfg.vllm_server_base_url, cfg.vllm_gpu_memory_utilization) == (
        True, "server", "http://gpu01:8000", 0.5)
    assert "vllm" not in sys.modules


def test_recipe_vllm_settings_validate_without_vllm_and_bad_ones_are_one_line(tmp_path):
    from cai.core.errors import CaiError
    from cai.run.load import load_recipe
    from cai.run.train_stages import check_trainer_configs

    def recipe(config: str):
        p = tmp_path / "r.yaml"
        p.write_text(f"name: v\nprompts: {{redteam: {ROOT / 'examples' / 'prompts' / 'redteam.jsonl'}}}\n"
                     f"policy: {{method: grpo, reward: 'toy:contains=a', train: {{config: {config}}}}}\n")
        return load_recipe(p)[0].recipe

    check_trainer_configs(recipe(json.dumps(VLLM)))
    with pytest.raises(CaiError, match=r"^policy.train: vllm_mode 'remote' is not colocate or server"):
        check_trainer_configs(recipe("{use_vllm: true, vllm_mode: remote}"))
    with pytest.raises(CaiError, match="vllm_server_base_url is set but vllm_mode is colocate"):
        check_trainer_configs(recipe("{use_vllm: true, vllm_server_base_url: 'http://h:8000'}"))
    assert "vllm" not in sys.modules


@NO_VLLM
def test_grpo_cli_asking_for_vllm_without_it_stops_in_one_line_at_the_start(tiny_model_dir, tmp_path, capsys,
                                                                           monkeypatch):
    from tests.helpers.cli import one_line_error, run_cli

    sets = [a for k, v in VLLM.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, _, err = run_cli(["train", "grpo", "--prompts", str(_prompts(tmp_path / "p.jsonl")), "--reward",
                            "toy:contains=bread", "--model", str(tiny_model_dir), "--output",
                            str(tmp_path / "o"), *sets], capsys, monkeypatch)
    one_line_error(code, err, "use_vllm: true (vllm_mode server) needs the vllm package")
    assert not (tmp_path / "o" / "model.safetensors").exists()
