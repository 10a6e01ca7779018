"""The PPO policy's value head: fp32 whatever the autocast around it."""

from __future__ import annotations

import torch

from cai.train.ppo.rollout import PolicyWithValueHead, positions


def test_value_head_runs_in_fp32_under_bf16_autocast(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PolicyWithValueHead(policy).eval()
    ids = torch.tensor([[0, 5, 6, 7, 8], [9, 10, 11, 12, 13]])
    att = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, values = model(ids, att)
        hidden = policy(input_ids=ids, attention_mask=att, position_ids=positions(att),
                        output_hidden_states=True,
                        use_cache=False).hidden_states[-1]  # [B, L, H], bf16 trunk under autocast
    assert logits.dtype == torch.bfloat16  # the trunk did run under autocast ...
    assert values.dtype == torch.float32  # ... the head did not
    with torch.no_grad():
        expected = model.value_head(hidden.float()).squeeze(-1)  # [B, L], the fp32 computation
    assert values.shape == (2, 5)
    torch.testing.assert_close(values, expected, rtol=0, atol=1e-6)
