"""DPO on the tiny model: soft labels (p = 1 equals TRL's sigmoid loss), the margin widens, config checks."""

from __future__ import annotations

import pytest

from tests.helpers.data import write_toy_prefs


def _trainer(cls, tiny_model_dir, train, out, **options):
    from cai.train.common.models import load_causal_lm, load_tokenizer
    from cai.train.dpo import default_dpo_config

    cfg = default_dpo_config(out, disable_tqdm=True, save_strategy="no", **options)
    return cls(model=load_causal_lm(str(tiny_model_dir)), args=cfg, train_dataset=train,
               processing_class=load_tokenizer(str(tiny_model_dir)))


def test_soft_dpo_with_hard_labels_equals_trl_sigmoid_loss(tiny_model_dir, tmp_path):
    """Same batch, same weights: SoftLabelDPOTrainer with p = 1 gives TRL's own sigmoid DPO loss."""
    import torch
    from trl import DPOTrainer

    from cai.train.common.data import preference_datasets
    from cai.train.dpo import SoftLabelDPOTrainer
    from cai.train.soft_labels import SoftLabelCollator

    train, _ = preference_datasets(write_toy_prefs(tmp_path / "p.jsonl", 4, soft=False))
    torch.manual_seed(0)
    soft = _trainer(SoftLabelDPOTrainer, tiny_model_dir, train, tmp_path / "a", beta=0.5)
    soft.data_collator = SoftLabelCollator(soft.data_collator)
    plain = _trainer(DPOTrainer, tiny_model_dir, train, tmp_path / "b", beta=0.5)
    with torch.no_grad():  # make policy differ from reference so the loss is not log 2
        for p in soft.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        plain.model.load_state_dict(soft.model.state_dict())
    examples = [soft.train_dataset[i] for i in range(4)]
    soft_batch = soft.data_collator(examples)
    assert soft_batch["p_chosen"].tolist() == [1.0] * 4
    plain_batch = plain.data_collator([{k: v for k, v in e.items() if k not in ("p_chosen", "weight")}
                                       for e in examples])
    soft.model.eval()
    plain.model.eval()
    with torch.no_grad():
        a = soft.compute_loss(soft.model, dict(soft_batch)).item()
        b = plain.compute_loss(plain.model, dict(plain_batch)).item()
        soft_batch["p_chosen"] = torch.full((4,), 0.5)
        c = soft.compute_loss(soft.model, dict(soft_batch)).item()
    assert a == pytest.approx(b, abs=1e-5) and abs(a - 0.6931) > 1e-3
    assert c != pytest.approx(a, abs=1e-4)


@pytest.mark.parametrize("soft_labels", [True, False])
def test_dpo_widens_implicit_reward_margin(tiny_model_dir, tmp_path, soft_labels):
    from cai.train.dpo import default_dpo_config, train_dpo

    data = write_toy_prefs(tmp_path / "prefs.jsonl", 48)
    out = tmp_path / "dpo"
    cfg = default_dpo_config(out, max_steps=8, per_device_train_batch_size=4, learning_rate=5e-3, beta=0.1,
                             logging_steps=4, disable_tqdm=True, save_strategy="no")
    result = train_dpo(data, output_dir=out, model=str(tiny_model_dir), config=cfg, eval_fraction=0.25,
                       soft_labels=soft_labels)
    m = result.metrics
    # Before training policy == reference, so every implicit reward margin is exactly 0.
    assert m["eval_rewards/margins"] > 0.2 and m["eval_rewards/accuracies"] > 0.9, m
    card = (out / "README.md").read_text()
    assert "toy version 1 (hash `ab12`)" in card and f"soft_labels: {soft_labels}" in card


def test_soft_labels_refuse_other_loss_types(tmp_path):
    from cai.core.errors import CaiError
    from cai.train.dpo import check_soft_label_config, default_dpo_config

    check_soft_label_config(default_dpo_config(tmp_path))
    with pytest.raises(CaiError, match="loss_type=\\['ipo'\\]"):
        check_soft_label_config(default_dpo_config(tmp_path, loss_type="ipo"))
    with pytest.raises(CaiError, match="label_smoothing=0.1"):
        check_soft_label_config(default_dpo_config(tmp_path, label_smoothing=0.1))


def test_dpo_lora_uses_base_as_reference(tiny_model_dir, tmp_path):
    """--lora: the adapter trains, the base (adapter off) is the reference; the merged model is saved."""
    import json

    from cai.train.common.models import LoraOptions, ModelOptions
    from cai.train.dpo import default_dpo_config, train_dpo

    data = write_toy_prefs(tmp_path / "prefs.jsonl", 16)
    out = tmp_path / "dpo-lora"
    cfg = default_dpo_config(out, max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                             logging_steps=1, disable_tqdm=True, save_strategy="no")
    result = train_dpo(data, output_dir=out, model=str(tiny_model_dir), config=cfg, soft_labels=True,
                       options=ModelOptions(lora=LoraOptions(r=4, alpha=8, dropout=0.0)))
    assert result.metrics["rewards/margins"] != 0.0
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["notes"]["reference"].startswith("the base model")


def test_hard_label_dpo_refuses_chain_of_thought_labels(tmp_path):
    """--cot labels sit in a narrow band around 0.5: training them as hard labels is refused; soft labels
    pass."""
    import json

    from cai.core.errors import CaiError
    from cai.train.dpo import check_cot_labels

    path = write_toy_prefs(tmp_path / "p.jsonl", 3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["ai_label"] = {"label_id": "x", "feedback_model": "m", "feedback_backend": "hf",
                           "method": "logprobs", "principle_ids": ["p"], "margin": 0.2, "p_chosen_as_a": 0.6,
                           "p_chosen_as_b": 0.6, "position_consistent": True, "cot": True}
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CaiError, match="1 pair\\(s\\) were labelled with --cot.*--soft-labels"):
        check_cot_labels([str(path)], soft_labels=False)
    check_cot_labels([str(path)], soft_labels=True)
    check_cot_labels([str(write_toy_prefs(tmp_path / "q.jsonl", 3))], soft_labels=False)
