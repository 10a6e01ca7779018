"""The hf backend's decode loop: one batch from prefilled prompts to finished token lists.

Per step: pick each live row's next token (argmax, or top-p sampling from the
row's own seeded generator, so a request's draw does not depend on its batch),
retire rows that hit EOS or a stop string, drop retired rows from the batch and
its cache (in place, when the cache is preallocated), run the model on the live
rows' new tokens. The attention mask lives in one preallocated buffer too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.core.records import SamplingParams


def decode(lm: Any, pre: Any, seeds: Sequence[int], params: SamplingParams, eos_ids: set[int],
           tokenizer: Any) -> list[tuple[list[int], str]]:
    """Generate from a :class:`~cai.backends.hf.prefix_cache.Prefilled` batch; per row the new ids (EOS
    excluded) and a finish reason."""
    import torch

    from cai.backends.hf.cache import cache_kwargs

    n = len(seeds)
    cache, logits, next_pos = pre.cache, pre.logits, pre.next_pos
    with_cache = cache_kwargs(lm, cache)  # the cache object is updated in place: one lookup
    width = pre.mask.shape[1]
    # [B, T + new]: the mask of every step is a prefix
    mask = pre.mask.new_ones((n, width + params.max_new_tokens))
    mask[:, :width] = pre.mask
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    live = list(range(n))  # original row of each live batch row
    generated: list[list[int]] = [[] for _ in range(n)]
    reasons = ["length"] * n
    for step in range(params.max_new_tokens):
        tokens = pick(logits, params, [generators[r] for r in live])  # [L]
        keep: list[int] = []
        for j, (r, t) in enumerate(zip(live, tokens.tolist())):
            if t in eos_ids:
                reasons[r] = "stop"
                continue
            generated[r].append(t)
            if params.stop and has_stop(tokenizer, generated[r], params.stop):
                reasons[r] = "stop"
                continue
            keep.append(j)
        if not keep or step == params.max_new_tokens - 1:
            break
        if len(keep) < len(live):  # drop finished rows from the batch and the cache
            idx = torch.tensor(keep, device=tokens.device)
            cache.batch_select_indices(idx)
            mask, next_pos, tokens = mask[idx], next_pos[idx], tokens[idx]
            live = [live[j] for j in keep]
        out = lm(input_ids=tokens[:, None], attention_mask=mask[:, : width + step + 1],
                 position_ids=next_pos[:, None], **with_cache)
        logits = out.logits[:, -1, :].float()  # [L, V]
        next_pos = next_pos + 1
    return list(zip(generated, reasons))


def pick(logits: Any, params: SamplingParams, generators: list) -> Any:
    """Next token per row: argmax when greedy, else top-p sampling with each row's own generator.

    logits: [B, V] float. Returns [B] long. Top-p keeps the smallest set of
    most likely tokens whose mass reaches ``top_p``; the candidates come from a
    ``topk`` of 64 (then 1024, then the full sort) when that already covers the
    mass of every row, which keeps the same set as a full sort but is faster.

    >>> import torch
    >>> logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    >>> pick(logits, SamplingParams(temperature=0.0), []).tolist()
    [0, 2]
    >>> gens = [torch.Generator().manual_seed(0) for _ in range(2)]
    >>> pick(logits, SamplingParams(temperature=1.0, top_p=0.4),
    ...      gens).tolist()  # the top token alone reaches 0.4
    [0, 2]
    """
    import torch

    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)  # [B, V]
    if params.top_p < 1.0:
        probs = _top_p(probs, params.top_p)
    probs = probs.cpu()
    picks = [int(torch.multinomial(probs[j], 1, generator=g)) for j, g in enumerate(generators)]
    return torch.tensor(picks, device=logits.device)


def _top_p(probs: Any, top_p: float) -> Any:
    """``probs`` [B, V] with everything outside each row's top-p set zeroed (not renormalised: multinomial
    does not need it)."""
    import torch

    vocab = probs.shape[-1]
    for k in (64, 1024, vocab):
        k = min(k, vocab)
        top_p_vals, top_i = probs.topk(k, dim=-1) if k < vocab else probs.sort(dim=-1, descending=True)
        before = top_p_vals.cumsum(-1) - top_p_vals  # mass of the more likely tokens
        if k == vocab or bool((before[:, -1] > top_p).all()):
            kept = top_p_vals.masked_fill(before > top_p, 0.0)
            return torch.zeros_like(probs).scatter(-1, top_i, kept)
    raise AssertionError("unreachable")


def has_stop(tokenizer: Any, ids: list[int], stop: Sequence[str]) -> bool:
    """Whether the decoded tail of ``ids`` contains a stop string."""
    tail = tokenizer.decode(ids[-32:], skip_special_tokens=True)
    return any(s in tail for s in stop)
