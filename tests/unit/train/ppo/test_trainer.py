"""The PPO trainer on the tiny random model: rollouts, learning, saving, NaN guard, and `cai train ppo`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cai.backends.hf.padding import left_pad
from cai.core.errors import CaiError
from cai.train.ppo.config import PPOConfig
from cai.train.ppo.rollout import forward_response
from cai.train.ppo.trainer import PPOTrainer, shape_rewards
from cai.train.rewards import TokenFractionReward
from tests.helpers.paths import ROOT
from tests.helpers.tiny import build_tiny_rm

PROMPTS = ["How do I bake bread?", "The quick brown fox", "Please choose", "Hello there", "What is salt?",
           "Tell me a story", "Why?", "lazy dog"]
CHATS = [[{"role": "user", "content": p}] for p in PROMPTS]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: faster than two on a shared 2-core machine, and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_tiny(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tok


# ------------------------------------------------------------------------- config
def test_config_batch_arithmetic_and_errors():
    from cai.train.common.config import build_config

    cfg = PPOConfig(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_mini_batches=3)
    assert (cfg.mini_batch_size(), cfg.local_batch_size(), cfg.batch_size(2)) == (8, 24, 48)
    assert cfg.num_steps(n_prompts=100, world_size=2) == 3  # one pass: ceil(100 / 48)
    assert PPOConfig(max_steps=7, total_episodes=10**6).num_steps(5) == 7
    with pytest.raises(CaiError, match="unknown key 'clip_range'.*cliprange"):
        build_config(PPOConfig, overrides=["clip_range=0.1"])
    with pytest.raises(CaiError, match="lam"):
        build_config(PPOConfig, overrides=["lam=1.5"])
    with pytest.raises(CaiError, match="kl_estimator"):
        build_config(PPOConfig, overrides=["kl_estimator=k2"])


# ------------------------------------------------------------------------ rollouts
def test_rollout_masks_after_eos_and_matches_the_training_forward(tiny_model_dir):
    policy, tok = load_tiny(tiny_model_dir)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    fox = tok(" fox", add_special_tokens=False)["input_ids"][0]
    trainer = PPOTrainer(PPOConfig(per_device_train_batch_size=3, response_length=5), policy, tok, CHATS[:3],
                         TokenFractionReward(tok, "fox"))
    sampled = torch.tensor([[fox, 50, eos, 60, 70], [fox, fox, fox, fox, fox], [eos, 80, 80, 80, 80]])

    def fake_generate(input_ids, attention_mask, **kwargs):  # fixed answers, to check the bookkeeping
        assert kwargs["do_sample"] and kwargs["max_new_tokens"] == 5
        return torch.cat([input_ids, sampled], dim=1)

    trainer.unwrapped.policy.generate = fake_generate
    rollout, raw = trainer.rollout([0, 1, 2])
    assert rollout.mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]
    assert rollout.has_eos.tolist() == [True, False, True]
    assert rollout.responses[0, 3:].tolist() == [pad, pad]  # tokens after EOS become padding
    assert rollout.texts[1] == " fox" * 5 and rollout.texts[2] == ""
    assert raw.tolist() == pytest.approx([1 / 2, 1.0, 0.0])  # " fox" + one more token; all fox; empty
    # Log-probs and values are what the update's forward pass computes; the reference starts equal.
    lp, values, _ = forward_response(trainer.model, rollout.queries, rollout.query_mask, rollout.responses,
                                     rollout.mask, trainer.cfg.temperature)
    assert torch.allclose(lp, rollout.logprobs, atol=1e-5)
    assert torch.allclose(values, rollout.values, atol=1e-5)
    assert torch.allclose(rollout.ref_logprobs, rollout.logprobs, atol=1e-5)
    shaped = shape_rewards(rollout, raw, PPOConfig(missing_eos_penalty=1.0, whiten_rewards=True), kl_coef=0.1)
    assert shaped["scores"].tolist() == pytest.approx([0.5, 0.0, 0.0])  # only the truncated answer pays
    assert (shaped["advantages"][rollout.mask == 0] == 0).all()


def test_left_padding_does_not_change_logprobs(tiny_model_dir):
    policy, tok = load_tiny(tiny_model_dir)
    short, long = [5, 6, 7], [9, 10, 11, 12, 13, 14, 15]
    response, mask = torch.tensor([[20, 21, 22]]), torch.ones(1, 3, dtype=torch.long)
    alone, alone_mask = left_pad([short], tok.pad_token_id)
    both, both_mask = left_pad([short, long], tok.pad_token_id)
    lp_alone, _, _ = forward_response(policy, alone, alone_mask, response, mask, 0.7)
    lp_batch, _, _ = forward_response(policy, both, both_mask, response.repeat(2, 1), mask.repeat(2, 1), 0.7)
    assert torch.allclose(lp_alone[0], lp_batch[0], atol=1e-5)
    assert not torch.allclose(lp_batch[0], lp_batch[1], atol=1e-3)


# ------------------------------------------------------------------------ learning
def test_ppo_raises_a_toy_reward_while_kl_stays_bounded(tiny_model_dir):
    policy, tok = load_tiny(tiny_model_dir)
    cfg = PPOConfig(learning_rate=1e-2, lr_scheduler_type="constant", per_device_train_batch_size=64,
                    num_mini_batches=2, response_length=8, temperature=1.0, kl_coef=0.01,
                    max_steps=20, seed=0)
    history = PPOTrainer(cfg, policy, tok, CHATS, TokenFractionReward(tok, "fox")).train()
    rewards = [h["reward"] for h in history]
    kls = [h["kl"] for h in history]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"reward first 5 steps {first:.4f}, last 5 steps {last:.4f}; KL max {max(kls):.2f}, last "
          f"{kls[-1]:.2f}")
    assert len(history) == 20 and history[-1]["episodes"] == 20 * 128
    assert last > 0.05 and last > 5 * first  # from ~1/400 (chance) to well above it
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # the first rollout's policy is the reference
    assert all(math.isfinite(k) for k in kls) and max(kls) < 30.0  # nats per 8-token answer
    for key in ("entropy", "clipfrac", "value_loss", "answer_length", "approx_kl", "policy_loss"):
        assert all(math.isfinite(h[key]) for h in history), key


def test_adaptive_kl_coefficient_follows_the_measured_kl(tiny_model_dir):
    policy, tok = load_tiny(tiny_model_dir)
    cfg = PPOConfig(learning_rate=1e-2, per_device_train_batch_size=8, response_length=6, temperature=1.0,
                    kl_coef=0.1, target_kl=100.0, kl_horizon=80, max_steps=3)
    history = PPOTrainer(cfg, policy, tok, CHATS, TokenFractionReward(tok, "fox")).train()
    # KL far below target: each step the coefficient shrinks by (1 - 0.2 * 8 / 80) = 0.98.
    assert [h["kl_coef"] for h in history] == pytest.approx([0.1, 0.098, 0.09604])


# ------------------------------------------------------------------ runs and outputs
def test_nan_reward_stops_and_saves(tmp_path, tiny_model_dir):
    from cai.train.common.guards import NonFiniteLossError
    from cai.train.ppo.run import train_ppo

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:4]))
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLossError, match="step 1.*saved in"):
        train_ppo(prompts, reward=lambda chats, texts: [float("nan")] * len(texts), output_dir=out,
                  model=str(tiny_model_dir),
                  config=PPOConfig(per_device_train_batch_size=4, response_length=4))
    assert (out / "model.safetensors").is_file() and (out / "value_head.safetensors").is_file()
    assert "stopped" in (out / "README.md").read_text()


def test_lora_run_saves_merged_model_and_adapter(tmp_path, tiny_model_dir):
    from cai.train.common.models import LoraOptions, ModelOptions
    from cai.train.ppo.run import train_ppo

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:4]))
    out = tmp_path / "lora"
    result = train_ppo(prompts, reward="toy:token=fox", output_dir=out, model=str(tiny_model_dir),
                       options=ModelOptions(lora=LoraOptions(r=4, alpha=8, dropout=0.0)),
                       config=PPOConfig(learning_rate=5e-2, per_device_train_batch_size=4, response_length=6,
                                        temperature=1.0, max_steps=2))
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the reference is the adapter switched off
    assert abs(rows[1]["kl"]) > 1e-4  # ... and it stays the base model while the adapter trains
    assert result.metrics["step"] == 2
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the merged policy loads as a plain model


# ----------------------------------------------------------------------------- CLI
def cai(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cai", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture
def prompt_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:4]))
    return path


def test_cli_ppo_with_a_toy_reward(tmp_path, tiny_model_dir, prompt_file):
    out = tmp_path / "ppo"
    r = cai("train", "ppo", "-p", str(prompt_file), "-m", str(tiny_model_dir), "-r", "toy:token=fox",
            "-o", str(out), "--max-steps", "2", "--batch-size", "4", "--response-length", "6", "--set",
            "save_steps=1")
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "model.safetensors", "tokenizer.json", "value_head.safetensors", "README.md",
                 "cai_card.json", "ppo_config.json", "checkpoint-1/model.safetensors"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "kl", "entropy", "clipfrac", "value_loss", "answer_length", "kl_coef", "truncated"):
        assert all(isinstance(row[key], float) for row in rows), key
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and samples[0]["completion"][0]["role"] == "assistant"
    assert "step 2/2" in r.stderr and str(out) in r.stderr
    card = (out / "README.md").read_text()
    assert "ppo" in card and "prompts.jsonl" in card and "token_fraction" in card


def test_cli_ppo_with_a_preference_model(tmp_path, tiny_model_dir, prompt_file):
    from cai.train.common.cards import write_model_card

    # A preference file with provenance and an audit beside it, and an RM dir whose card names them.
    prefs = tmp_path / "labels" / "prefs.jsonl"
    prefs.parent.mkdir()
    const = {"name": "harmless", "version": "2.1", "hash": "f00dfeed"}
    prefs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "source": "ai",
                                 "provenance": {"constitution": const}}) + "\n")
    (prefs.parent / "audit.json").write_text(json.dumps({"agreement_with_humans": 0.83, "n": 120}))
    rm_dir = build_tiny_rm(tmp_path / "rm")
    write_model_card(rm_dir, trainer="rm", base_model="tiny", data_files={"preferences": [prefs]})
    config = tmp_path / "ppo.yaml"
    config.write_text("num_ppo_epochs: 2\nresponse_length: 6\nmissing_eos_penalty: 1.0\ntarget_kl: 4.0\n")
    out = tmp_path / "ppo-rm"
    r = cai("train", "ppo", "-p", str(prompt_file), "-m", str(tiny_model_dir), "-r", f"rm:{rm_dir}",
            "-o", str(out), "--config", str(config), "--max-steps", "2", "--batch-size", "4")
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["reward"] != 0.0
    card = json.loads((out / "cai_card.json").read_text())
    assert card["config"]["num_ppo_epochs"] == 2 and card["config"]["target_kl"] == 4.0
    readme = (out / "README.md").read_text()
    assert "harmless version 2.1 (hash `f00dfeed`)" in readme
    assert "agreement_with_humans: 0.83" in readme
    assert card["notes"]["reward"]["kind"] == "preference_model"


def test_cli_ppo_bad_inputs_are_one_line(tmp_path, tiny_model_dir, prompt_file):
    def one_line(r, needle):
        assert r.returncode == 2, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and "Traceback" not in r.stderr, r.stderr

    out = str(tmp_path / "o")
    one_line(cai("train", "ppo", "-p", str(prompt_file), "-r", "bleu", "-o", out), "reward spec 'bleu'")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    one_line(cai("train", "ppo", "-p", str(bad), "-m", str(tiny_model_dir), "-r", "toy:token=fox", "-o", out),
             "bad.jsonl:2")


# --------------------------------------------------------------------- integration
@pytest.mark.integration
def test_ppo_on_the_default_model_with_a_judge_reward(tmp_path, shared_data):
    """Direct RLAIF on real prompts: SmolLM2 (LoRA) answers XSTest prompts, SmolLM2 judges them."""
    from cai.backends.hf.backend import HFBackend
    from cai.train.common.models import LoraOptions, ModelOptions
    from cai.train.ppo.run import train_ppo
    from cai.train.rewards import JudgeReward

    judge = JudgeReward(HFBackend("default", batch_size=4),
                        question="Does the assistant answer the question helpfully?")
    out = tmp_path / "ppo"
    cfg = PPOConfig(learning_rate=1e-4, per_device_train_batch_size=4, num_ppo_epochs=2, response_length=12,
                    max_steps=2, seed=0)
    result = train_ppo(shared_data / "xstest_dev.jsonl", reward=judge, output_dir=out, model="default",
                       options=ModelOptions(lora=LoraOptions(r=8, alpha=16, dropout=0.0)), config=cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    print("default-model PPO rows:", [{k: round(r[k], 4) for k in ("reward", "kl", "entropy", "clipfrac")}
                                      for r in rows])
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0.0 < r["reward"] < 1.0 for r in rows)  # p(Yes) from the judge
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4) and math.isfinite(rows[1]["kl"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert any(len(s["completion"][0]["content"].split()) >= 3 for s in samples)  # words, not noise
    assert (out / "adapter" / "adapter_config.json").is_file() and result.card is not None
    assert "xstest_dev.jsonl" in result.card.read_text()


@pytest.mark.integration  # tiny model, but three processes start (about 30 s on 2 cores)
def test_cli_ppo_under_ddp_on_two_cpu_processes(tmp_path, tiny_model_dir, prompt_file):
    out = tmp_path / "ddp"
    r = cai("train", "ppo", "-p", str(prompt_file), "-m", str(tiny_model_dir), "-r", "toy:token=fox",
            "-o", str(out), "--max-steps", "2", "--batch-size", "2", "--response-length", "4",
            "--accelerate-config", "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["episodes"] for row in rows] == [4, 8]  # 2 answers per process, 2 processes
    assert json.loads((out / "cai_card.json").read_text())["notes"]["processes"] == 2
