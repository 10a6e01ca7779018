"""Every private TRL / transformers / accelerate / torch internal cai overrides or calls still exists, with
the signature and shape cai relies on.

pyproject.toml caps trl at the tested minor release; before raising a cap, run this file against the new
release: each failure names the internal that moved and the cai code that uses it.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import pytest


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.fixture(scope="module")
def tiny_llama():
    """A 2-layer random Llama built in memory (no tokenizer needed), with its config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("trainer", ["DPOTrainer", "RewardTrainer"])
def test_set_signature_columns_if_needed_fills_a_list_of_columns(trainer):
    """cai.train.dpo / cai.train.reward_model override it to add ``p_chosen``/``weight`` to the columns TRL
    keeps (``with_soft_columns``): it takes no argument and fills ``self._signature_columns`` when None."""
    import types

    import trl

    method = getattr(trl, trainer)._set_signature_columns_if_needed
    assert _params(method) == ["self"]
    stub = types.SimpleNamespace(_signature_columns=None, _is_vision_dataset=False)
    method(stub)
    cols = stub._signature_columns
    assert isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols)
    assert {"chosen_ids", "rejected_ids"} <= set(cols)  # what SoftLabelCollator's base collator reads
    kept = ["already"]
    stub._signature_columns = kept
    method(stub)
    assert stub._signature_columns is kept  # set only when None: cai's additions are not overwritten


def test_trainer_hooks_cai_overrides_keep_their_signatures():
    """SoftLabelDPOTrainer / SoftLabelRewardTrainer override ``compute_loss`` and call
    ``compute_ref_log_probs`` with these parameters."""
    from trl import DPOTrainer, RewardConfig, RewardTrainer

    for cls in (DPOTrainer, RewardTrainer):
        assert _params(cls.compute_loss) == ["self", "model", "inputs", "return_outputs",
                                             "num_items_in_batch"]
    assert _params(DPOTrainer.compute_ref_log_probs) == ["self", "model", "inputs"]
    for name in ("beta", "ref_model"):  # read by SoftLabelDPOTrainer.compute_loss
        assert name in inspect.getsource(DPOTrainer.__init__), name
    assert "center_rewards_coefficient" in RewardConfig.__dataclass_fields__


def test_dpo_metrics_are_lists_per_mode_that_log_averages():
    """SoftLabelDPOTrainer._log_rewards appends to ``self._metrics[mode][key]`` (mode ``train``/``eval``);
    TRL's ``log`` averages and clears those lists."""
    from trl import DPOTrainer

    init = " ".join(inspect.getsource(DPOTrainer.__init__).split())
    assert 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}' in init
    log = inspect.getsource(DPOTrainer.log)
    assert "self._metrics[mode].items()" in log and "self._metrics[mode].clear()" in log
    m = {"train": defaultdict(list), "eval": defaultdict(list)}
    m["train"]["rewards/chosen"].append(1.0)  # the shape cai writes into
    assert dict(m["train"]) == {"rewards/chosen": [1.0]}


def test_fused_lm_head_returns_per_token_log_probs(tiny_llama):
    """cai.train.dpo.answer_logps calls ``model(..., labels=labels, fused_lm_head=True).log_probs`` (TRL
    adds the head in DPOTrainer.__init__): ``[B, T-1]`` log-probabilities of each next token, as
    ``log_softmax(logits)`` gathered at the labels."""
    import copy

    import torch
    from trl.trainer.utils import add_fused_lm_head

    assert {"model", "outputs"} <= set(_params(add_fused_lm_head))
    ids = torch.tensor([[1, 5, 9, 13, 2], [1, 7, 11, 3, 2]])  # [B=2, T=5]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = tiny_llama(input_ids=ids, attention_mask=mask, use_cache=False).logits  # [2, 5, V]
        want = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]  # [2, 4]
        fused = copy.deepcopy(tiny_llama)
        add_fused_lm_head(fused, outputs=("log_probs",))
        out = fused(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False, fused_lm_head=True)
    assert out.log_probs.shape == (2, 4)
    assert torch.allclose(out.log_probs, want, atol=1e-4)


def test_cache_layer_api_the_preallocated_cache_subclasses(tiny_llama):
    """cai.backends.hf.cache subclasses ``DynamicLayer`` and builds ``Cache(layers=...)``."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import Cache, DynamicLayer

    assert "layers" in _params(Cache.__init__)
    assert _params(DynamicLayer.lazy_initialization) == ["self", "key_states", "value_states"]
    assert _params(DynamicLayer.update)[:3] == ["self", "key_states", "value_states"]
    assert _params(DynamicLayer.get_seq_length) == ["self"]
    assert _params(DynamicLayer.batch_select_indices) == ["self", "indices"]
    layer = DynamicLayer()
    assert layer.is_initialized is False
    k = torch.zeros(2, 2, 3, 8)  # [B, H, T, D]
    keys, values = layer.update(k, k)
    assert layer.is_initialized and keys.shape == (2, 2, 3, 8) and layer.keys is keys
    layers = DynamicCache(config=tiny_llama.config).layers
    assert len(layers) == 2 and all(type(x) is DynamicLayer for x in layers)
    forward = _params(tiny_llama.forward)
    assert "cache" in forward or "past_key_values" in forward  # cache_kwargs picks whichever exists


def test_accelerate_and_torch_internals():
    """cai.train.jobs resets ``AcceleratorState._reset_state(reset_partial_state=True)`` between jobs;
    cai.backends.hf.prefix_cache keys its cache on each parameter's ``_version`` counter."""
    import torch
    from accelerate.state import AcceleratorState

    assert "reset_partial_state" in _params(AcceleratorState._reset_state)
    p = torch.zeros(2)
    before = p._version
    p.add_(1)
    assert isinstance(before, int) and p._version > before
