"""The preference model on the tiny model: the soft-label loss hook, a separable toy set, the pad guard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers.data import BAD, GOOD, write_toy_prefs
from tests.helpers.paths import ROOT


def test_compute_loss_uses_soft_labels(tiny_model_dir, tmp_path):
    """One batch through SoftLabelRewardTrainer.compute_loss equals the soft BT loss of its own rewards."""
    import torch

    from cai.train.common.data import preference_datasets
    from cai.train.common.models import load_reward_model, load_tokenizer
    from cai.train.losses import soft_bradley_terry_loss
    from cai.train.reward_model import SoftLabelRewardTrainer, default_rm_config
    from cai.train.soft_labels import SoftLabelCollator

    train, _ = preference_datasets(write_toy_prefs(tmp_path / "p.jsonl", 4))
    tok = load_tokenizer(str(tiny_model_dir))
    trainer = SoftLabelRewardTrainer(model=load_reward_model(str(tiny_model_dir), tok),
                                     args=default_rm_config(tmp_path / "o", disable_tqdm=True),
                                     train_dataset=train, processing_class=tok)
    trainer.data_collator = SoftLabelCollator(trainer.data_collator)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    p = batch["p_chosen"].clone()
    with torch.no_grad():
        loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
        r_c, r_r = outputs.logits.squeeze(-1).chunk(2)
        assert (loss.item()
                == pytest.approx(soft_bradley_terry_loss(r_c, r_r, p, batch["weight"]).item(), abs=1e-6))
        hard = -torch.nn.functional.logsigmoid(r_c - r_r).mean()
        assert not torch.equal(p, torch.ones(4))  # seed 0 draws soft labels among the first 4
        assert loss.item() != pytest.approx(hard.item(), abs=1e-6)


def test_preference_model_separates_toy_set(tiny_model_dir, tmp_path):
    from cai.train.reward_model import default_rm_config, train_reward_model

    data = write_toy_prefs(tmp_path / "prefs.jsonl", 120)
    human = write_toy_prefs(tmp_path / "human.jsonl", 30, seed=1, soft=False)
    out = tmp_path / "rm"
    cfg = default_rm_config(out, max_steps=25, per_device_train_batch_size=8, learning_rate=3e-3,
                            logging_steps=5, disable_tqdm=True, save_strategy="no")
    result = train_reward_model(data, output_dir=out, model=str(tiny_model_dir), config=cfg,
                                eval_fraction=0.25, human_eval=human)
    m = result.metrics
    assert m["held_out_pairs"] > 10 and m["held_out_accuracy"] > 0.9, m
    assert m["human_eval_pairs"] == 30 and m["human_eval_accuracy"] > 0.9, m
    # The output loads as the reward of RLOO/GRPO/PPO and ranks answers the same way.
    from cai.train.rewards import PreferenceModelReward

    reward = PreferenceModelReward(out)
    chat = [{"role": "user", "content": "How do I bake bread?"}]
    good, bad = reward([chat, chat], [GOOD[0], BAD[0]])
    assert good > bad
    card = (out / "README.md").read_text()
    assert "toy version 1 (hash `ab12`)" in card and "held_out_accuracy" in card and "human_eval" in card


def test_rm_cli_refuses_eos_padding_and_names_the_fix(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    eos_pad = tmp_path / "eos-pad"
    shutil.copytree(tiny_model_dir, eos_pad)
    tok = AutoTokenizer.from_pretrained(eos_pad)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(eos_pad)
    data = write_toy_prefs(tmp_path / "prefs.jsonl", 8)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "cai", "train", "rm", "--data", str(data), "--model",
                        str(eos_pad), "--output", str(tmp_path / "o")], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "pads with its EOS token" in r.stderr and "--pad-token '<|endoftext|>'" in r.stderr


@pytest.mark.integration
def test_default_model_pads_with_eos_and_pad_token_fixes_it():
    """The embedded model's tokenizer has pad == eos == <|im_end|>; --pad-token '<|endoftext|>' fixes it."""
    from cai.core.errors import CaiError
    from cai.train.common.models import check_pad_token, load_tokenizer

    tok = load_tokenizer("default")
    with pytest.raises(CaiError, match="--pad-token '<\\|endoftext\\|>'"):
        check_pad_token(tok, "default")
    fixed = load_tokenizer("default", pad_token="<|endoftext|>")
    check_pad_token(fixed, "default")
    assert fixed.pad_token_id != fixed.eos_token_id
