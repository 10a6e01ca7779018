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
