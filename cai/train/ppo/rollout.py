"""PPO rollouts: the policy with its value head, prompt batches, sampling, and the fp32 forward pass.

Value function: a linear head on the policy's last hidden state
(:class:`PolicyWithValueHead`), sharing the policy's trunk. It costs one model
copy instead of two (a separate value model would double memory and compute on
a CPU), and under LoRA the head trains beside the adapter. The reference is a
frozen copy of the initial policy, or, under LoRA, the same weights with the
adapter switched off (no copy at all).

A rollout samples answers with temperature from the policy (``generate``,
left padding), then recomputes every log-probability with one forward pass over
the full sequences in fp32, the same pass the update step trains through, so
the PPO ratio starts at exactly 1. Tokens after the first EOS are masked.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cai.backends.hf.padding import left_pad
from cai.train.ppo.math import entropy_from_logits, response_mask, token_logprobs


class PolicyWithValueHead(nn.Module):
    """A causal LM plus ``value_head``: a linear map of its last hidden state to one scalar per position.

    ``forward`` returns ``(logits [B, L, V], values [B, L])``; the head runs in fp32, with autocast
    switched off around it (under ``torch.autocast`` the trunk runs in bf16, the values stay fp32).
    """

    def __init__(self, policy: nn.Module, hidden_size: int | None = None):
        super().__init__()
        self.policy = policy
        size = hidden_size or policy.config.get_text_config().hidden_size
        self.value_head = nn.Linear(size, 1, dtype=torch.float32)
        nn.init.normal_(self.value_head.weight, std=1.0 / (size + 1) ** 0.5)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
            output_hidden_states=True, use_cache=False,
        )
        hidden = out.hidden_states[-1]  # [B, L, H], in the trunk's (autocast) precision
        # Autocast would run the head's matmul in bf16 again whatever its input: switch it off around the
        # head.
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            values = self.value_head(hidden.float()).squeeze(-1)  # [B, L] fp32
        return out.logits, values


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding.

    >>> positions(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])).tolist()
    [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# ------------------------------------------------------------------------- prompts
def encode_prompt(tokenizer: Any, chat: Sequence[dict[str, str]], max_length: int) -> tuple[list[int], bool]:
    """A chat's token ids with the assistant turn opened, left-truncated to ``max_length`` (and whether it
    was)."""
    ids = tokenizer.apply_chat_template(
        [dict(m) for m in chat], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    ids = list(ids)
    return ids[-max_length:], len(ids) > max_length


def prompt_batches(n_prompts: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches of prompt indices: each pass over the prompts is a fresh seeded shuffle.

    >>> it = prompt_batches(5, 4, seed=0)
    >>> a, b = next(it), next(it)
    >>> len(a), len(b), sorted(set(a + b[:1])) == list(range(5))
    (4, 4, True)
    """
    if n_prompts < 1:
        raise ValueError("no prompts")
    rng = random.Random(seed)
    pool: list[int] = []
    while True:
        while len(pool) < batch_size:
            order = list(range(n_prompts))
            rng.shuffle(order)
            pool.extend(order)
        yield pool[:batch_size]
        pool = pool[batch_size:]


# ------------------------------------------------------------------------- rollout
@dataclass
class Rollout:
    """One batch of sampled answers with everything the update needs (tensors on the training device)."""

    queries: torch.Tensor  # [B, Lq] left-padded prompt ids
    query_mask: torch.Tensor  # [B, Lq]
    responses: torch.Tensor  # [B, T] sampled ids, pad after EOS
    mask: torch.Tensor  # [B, T] 1 up to and including EOS
    has_eos: torch.Tensor  # [B] bool
    logprobs: torch.Tensor  # [B, T] fp32, policy at sampling time (temperature-scaled)
    ref_logprobs: torch.Tensor  # [B, T] fp32, frozen reference
    values: torch.Tensor  # [B, T] fp32, value head at sampling time
    texts: list[str]  # decoded answers (up to EOS, special tokens dropped)

    def __len__(self) -> int:
        return self.responses.shape[0]


def sequence_inputs(queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + answer as one sequence: ``(ids [B, Lq + T], attention [B, Lq + T])``; tokens after EOS
    unattended.

    >>> ids, att = sequence_inputs(torch.tensor([[0, 4]]), torch.tensor([[0, 1]]), torch.tensor([[5, 2, 9]]),
    ...                            torch.tensor([[1, 1, 0]]))
    >>> ids.tolist(), att.tolist()
    ([[0, 4, 5, 2, 9]], [[0, 1, 1, 1, 0]])
    """
    return torch.cat([queries, responses], dim=1), torch.cat([query_mask, mask.to(query_mask.dtype)], dim=1)


def response_slice(x: torch.Tensor, query_len: int, response_len: int) -> torch.Tensor:
    """The positions whose outputs predict the answer's tokens: ``x[:, Lq - 1 : Lq + T - 1]``.

    >>> response_slice(torch.arange(6)[None, :], 2, 3).tolist()
    [[1, 2, 3]]
    """
    return x[:, query_len - 1 : query_len + response_len - 1]


def forward_response(model: nn.Module, queries: torch.Tensor, query_mask: torch.Tensor,
                     responses: torch.Tensor, mask: torch.Tensor, temperature: float, *,
                     with_entropy: bool = False):
    """Policy log-probs [B, T], values [B, T] (or None) and entropy [B, T] (or None) of the answers, in fp32.

    ``model`` is a :class:`PolicyWithValueHead` (values) or a bare causal LM (the reference).
    """
    ids, att = sequence_inputs(queries, query_mask, responses, mask)
    Lq, T = queries.shape[1], responses.shape[1]
    if isinstance(getattr(model, "module", model), PolicyWithValueHead):
        logits, values = model(ids, att)
        values = response_slice(values, Lq, T)
    else:
        logits, values = model(input_ids=ids, attention_mask=att, position_ids=positions(att),
                               use_cache=False).logits, None
    logits = response_slice(logits, Lq, T).float() / temperature  # [B, T, V]
    logprobs = token_logprobs(logits, responses)
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logprobs, values, entropy


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# Sample from softmax(logits / temperature) and nothing else: these override whatever the model's own
# generation_config asks for (top-k, repetition penalty...), which would make the samples off-policy.
PLAIN_SAMPLING = dict(top_k=None, top_p=1.0, typical_p=1.0, min_p=None, epsilon_cutoff=0.0, eta_cutoff=0.0,
                      repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0, min_new_tokens=None,
                      bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None)


@torch.no_grad()
def sample_rollout(
    model: nn.Module,
    ref_model: nn.Module | None,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    *,
    response_length: int,
    temperature: float,
    eos_ids: Sequence[int],
    forward_batch_size: int,
    device: Any,
) -> Rollout:
    """Sample one answer per prompt and compute log-probs, reference log-probs and values.

    ``model`` is the (unwrapped) :class:`PolicyWithValueHead`; ``ref_model`` the
    frozen reference, or None when the policy is a peft model whose adapter is
    switched off for the reference pass.
    """
    policy = model.policy
    pad = tokenizer.pad_token_id
    queries, query_mask = left_pad(prompt_ids, pad)
    queries, query_mask = queries.to(device), query_mask.to(device)
    out = policy.generate(
        input_ids=queries, attention_mask=query_mask, max_new_tokens=response_length, do_sample=True,
        temperature=temperature, pad_token_id=pad, eos_token_id=list(eos_ids), **PLAIN_SAMPLING,
    )
    responses = out[:, queries.shape[1]:]
    if responses.shape[1] == 0:  # every answer ended at once: keep one (EOS) token per row
        responses = torch.full((len(prompt_ids), 1), eos_ids[0], dtype=torch.long, device=device)
    mask, has_eos = response_mask(responses, eos_ids)
    responses = responses.masked_fill(mask == 0, pad)
    logprobs, values, ref_logprobs = [], [], []
    for sl in _chunks(len(prompt_ids), forward_batch_size):
        args = (queries[sl], query_mask[sl], responses[sl], mask[sl], temperature)
        lp, v, _ = forward_response(model, *args)
        logprobs.append(lp)
        values.append(v)
        ctx = policy.disable_adapter() if ref_model is None else contextlib.nullcontext()
        with ctx:
            ref_lp, _, _ = forward_response(policy if ref_model is None else ref_model, *args)
        ref_logprobs.append(ref_lp)
    n_text = mask.sum(1) - has_eos.long()  # [B]: answer tokens before the EOS
    texts = [tokenizer.decode(responses[i, : int(n_text[i])], skip_special_tokens=True)
             for i in range(len(n_text))]
    return Rollout(queries, query_mask, responses, mask, has_eos, torch.cat(logprobs),
                   torch.cat(ref_logprobs), torch.cat(values), texts)
