"""Shared training infrastructure: data, cards, models (pad token, LoRA), guards, launch helpers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from cai.core.errors import CaiError

PROV = {"constitution": {"name": "harmless", "version": "2.0", "hash": "deadbeef"}, "model": "m"}


def _pref(i: int, p: float = 1.0, weight: float = 1.0, source: str = "ai", prov=PROV) -> dict:
    return {"prompt": [{"role": "user", "content": f"question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"good answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad answer {i}"}],
            "p_chosen": p, "weight": weight, "source": source, "provenance": prov}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------ data
def test_preference_datasets_keep_soft_labels_and_split_by_id(tmp_path):
    from cai.stages.export import split_by_id
    from cai.train.common.data import preference_datasets

    rows = [_pref(i, p=0.5 + i / 100, weight=1 + i % 2) for i in range(40)]
    path = _write(tmp_path / "prefs.jsonl", rows)
    train, test = preference_datasets(path, 0.25, seed=0)
    assert set(train.column_names) == {"id", "prompt", "chosen", "rejected", "p_chosen", "weight"}
    assert len(train) + len(test) == 40
    expected_test = {r["id"]
                     for r in split_by_id([{"id": i} for i in list(train["id"]) + list(test["id"])], 0.25)[1]}
    assert set(test["id"]) == expected_test
    by_q = {r["prompt"][0]["content"]: r for r in train}
    assert by_q["question 7?"]["p_chosen"] == pytest.approx(0.57) and by_q["question 7?"]["weight"] == 2.0
    assert by_q["question 7?"]["chosen"] == [{"role": "assistant", "content": "good answer 7"}]


def test_prompt_dataset_from_prompt_and_preference_files(tmp_path):
    from cai.train.common.data import prompt_dataset

    prompts = _write(tmp_path / "p.jsonl", [{"prompt": "hello"}, {"prompt": "hello"}, {"prompt": "bye"}])
    prefs = _write(tmp_path / "prefs.jsonl", [_pref(1), _pref(1) | {"chosen": "other"}, _pref(2)])
    ds = prompt_dataset([prompts, prefs])
    assert len(ds) == 4  # hello, bye, question 1?, question 2? (duplicates merged)
    assert ds[0]["prompt"] == [{"role": "user", "content": "hello"}]


def test_bad_record_is_one_line_error_with_file_and_line(tmp_path):
    from cai.train.common.data import preference_datasets

    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(_pref(1)) + "\n" + json.dumps(_pref(2) | {"p_chosen": 1.5}) + "\n")
    with pytest.raises(CaiError, match=r"prefs\.jsonl:2: p_chosen"):
        preference_datasets(path)


# ------------------------------------------------------------------ cards
def test_model_card_names_data_constitution_audit_config_metrics(tmp_path):
    from trl import DPOConfig

    from cai.train.common.cards import sha256_file, write_model_card
    from cai.train.common.config import build_config, training_defaults

    data_dir = tmp_path / "labels"
    data_dir.mkdir()
    prefs = _write(data_dir / "prefs.jsonl", [_pref(1), _pref(2, source="human", prov=None)])
    (data_dir / "audit.json").write_text(json.dumps({"agreement": 0.8125, "n": 160,
                                                     "by_principle": {"harm": {"agreement": 0.9}}}))
    cfg = build_config(DPOConfig, options={"beta": 0.3},
                       defaults=training_defaults(DPOConfig, tmp_path / "out"))
    card = write_model_card(tmp_path / "out", trainer="dpo", base_model="default",
                            data_files={"preferences": [prefs]}, config=cfg,
                            metrics={"loss": 0.5, "bad": float("nan")})
    text = card.read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in text  # the hub id behind `default`
    assert "harmless version 2.0 (hash `deadbeef`)" in text
    assert sha256_file(prefs) in text and "| 2 |" in text and "ai: 1, human: 1" in text
    assert "agreement: 0.8125" in text and "by_principle.harm.agreement: 0.9" in text
    assert '"beta": 0.3' in text and "- loss: 0.5" in text
    facts = json.loads((tmp_path / "out" / "cai_card.json").read_text())
    assert facts["data"][0]["constitutions"] == [{"name": "harmless", "version": "2.0", "hash": "deadbeef",
                                                  "records": 1}]
    assert facts["audit"]["summary"]["n"] == 160


def test_explicit_audit_file_and_missing_one(tmp_path):
    from cai.train.common.cards import write_model_card

    prefs = _write(tmp_path / "prefs.jsonl", [_pref(1)])
    audit = tmp_path / "elsewhere.json"
    audit.write_text(json.dumps({"agreement": 0.5}))
    card = write_model_card(tmp_path / "o", trainer="rm", base_model="m", data_files={"preferences": [prefs]},
                            audit=audit)
    assert "agreement: 0.5" in card.read_text()
    with pytest.raises(CaiError, match="no such audit file"):
        write_model_card(tmp_path / "o", trainer="rm", base_model="m", data_files={"preferences": [prefs]},
                         audit=tmp_path / "nope.json")


# ------------------------------------------------------------------ models
def test_pad_token_guard_and_fix(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from cai.train.common.models import check_pad_token, load_reward_model, load_tokenizer

    eos_pad = tmp_path / "eos-pad"
    shutil.copytree(tiny_model_dir, eos_pad)
    tok = AutoTokenizer.from_pretrained(eos_pad)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(eos_pad)

    tok = load_tokenizer(str(eos_pad))
    with pytest.raises(CaiError) as err:
        check_pad_token(tok, "eos-pad")
    assert "pads with its EOS token '<|im_end|>'" in str(err.value)
    assert "--pad-token '<|endoftext|>'" in str(err.value)
    with pytest.raises(CaiError, match="pads with its EOS"):
        load_reward_model(str(eos_pad), tok)

    fixed = load_tokenizer(str(eos_pad), pad_token="<|endoftext|>")
    model = load_reward_model(str(eos_pad), fixed)
    assert fixed.pad_token == "<|endoftext|>" and model.config.pad_token_id == fixed.pad_token_id
    assert model.config.num_labels == 1 and next(model.parameters()).dtype.is_floating_point
    with pytest.raises(CaiError, match="not in the tokenizer's vocabulary"):
        load_tokenizer(str(eos_pad), pad_token="<|nope|>")
    with pytest.raises(CaiError, match="is the EOS token"):
        load_tokenizer(str(eos_pad), pad_token="<|im_end|>")


def test_lora_options():
    from cai.train.common.models import LoraOptions, lora_config

    cfg = lora_config(LoraOptions(r=4, alpha=8, dropout=0.0), "SEQ_CLS")
    assert (cfg.r, cfg.lora_alpha, cfg.target_modules, cfg.task_type) == (4, 8, "all-linear", "SEQ_CLS")
    with pytest.raises(CaiError, match="rank 0"):
        LoraOptions(r=0)


# ------------------------------------------------------------------ guards
def test_check_finite_for_custom_loops():
    import torch

    from cai.train.common.guards import NonFiniteLossError, check_finite

    assert check_finite(torch.tensor(1.5), 1) == 1.5
    with pytest.raises(NonFiniteLossError, match="loss is inf at step 4"):
        check_finite(torch.tensor(math.inf), 4)


def test_guard_stops_saves_last_finite_weights_and_raises(tiny_model_dir, tmp_path):
    """A NaN loss at step 3: the guard drops the NaN gradients, stops, saves finite weights, raises."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from cai.train.common.guards import NonFiniteGuard, NonFiniteLossError
    from cai.train.common.models import load_causal_lm, load_tokenizer
    from cai.train.common.runner import run_and_save
    from cai.train.sft import default_sft_config

    class PoisonAtStep3(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 2:
                model.model.norm.register_forward_hook(lambda mod, inp, out: out * float("nan"))

    rows = [{"prompt": f"q{i}", "completion": "Mix flour, water and salt."} for i in range(8)]
    data = _write(tmp_path / "sft.jsonl", rows)
    from cai.train.common.data import sft_datasets

    train, _ = sft_datasets(data)
    out = tmp_path / "out"
    cfg = default_sft_config(out, max_steps=6, per_device_train_batch_size=2, learning_rate=1e-3,
                             logging_steps=1, disable_tqdm=True, save_strategy="no")
    guard = NonFiniteGuard()
    trainer = SFTTrainer(model=load_causal_lm(str(tiny_model_dir)), args=cfg, train_dataset=train,
                         processing_class=load_tokenizer(str(tiny_model_dir)),
                         callbacks=[guard, PoisonAtStep3()])
    with pytest.raises(NonFiniteLossError, match=f"stopped at step 3.*saved in {out}"):
        run_and_save(trainer, guard, output_dir=out,
                     card={"trainer": "sft", "base_model": "tiny", "data_files": {"train": [data]}})
    assert guard.tripped_at == 3 and trainer.state.global_step == 3
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())
    assert (out / "README.md").is_file() and (out / "checkpoint-3").is_dir()


# ------------------------------------------------------------------ launch
def test_launch_profiles_and_command():
    import yaml

    from cai.train.common.launch import PROFILES, launch_command, profile_path, resolve_config

    for name in PROFILES:
        cfg = yaml.safe_load(profile_path(name).read_text())
        assert cfg["compute_environment"] == "LOCAL_MACHINE" and cfg["num_processes"] >= 1
    assert resolve_config("fsdp", 2, gpus=2)["distributed_type"] == "FSDP"
    with pytest.raises(CaiError, match="needs CUDA GPUs"):
        resolve_config("fsdp", None, gpus=0)
    cmd = launch_command("c.yaml",
                         ["train", "dpo", "--accelerate-config=ddp", "--num-processes", "2", "-d", "x"], 5)
    assert cmd[-5:] == ["cai", "train", "dpo", "-d", "x"] and "--accelerate-config=ddp" not in cmd
