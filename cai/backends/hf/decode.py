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
    mass of that row (a row that needs more is widened alone: one flat row
    does not sort the whole batch), which keeps the same set as a full sort
    but is faster. Each row draws from its set laid over the vocabulary
    (zeros elsewhere), so a seed gives the same token as a full sort would.

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
    probs = torch.softmax(logits / params.temperature, dim=-1).cpu()  # [B, V]
    if params.top_p >= 1.0:
        picks = [int(torch.multinomial(probs[j], 1, generator=g)) for j, g in enumerate(generators)]
    else:  # the full-vocabulary vector of each row's set: the draw a seed gives does not depend on how
        # the set was found (drawing among the set's own k weights is faster but draws other tokens)
        picks = []
        for (w, ids), g in zip(_top_p_sets(probs, params.top_p), generators):
            row = probs.new_zeros(probs.shape[-1])
            row[ids] = w
            picks.append(int(torch.multinomial(row, 1, generator=g)))
    return torch.tensor(picks, device=logits.device)


def _top_p_sets(probs: Any, top_p: float) -> list[tuple[Any, Any]]:
    """Each row's top-p set as ``(weights, token ids)``, most likely first (weights not renormalised:
    multinomial does not need it). Rows start from a ``topk`` of 64; a row whose 64 do not reach
    ``top_p`` is widened to 1024, then to a full sort, alone.

    >>> import torch
    >>> [(w.tolist(), i.tolist()) for w, i in _top_p_sets(torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]),
    ...                                                   0.65)]
    [([0.6000000238418579, 0.30000001192092896], [1, 2]), ([0.6000000238418579, 0.20000000298023224], [2, 0])]
    """
    vocab = probs.shape[-1]
    sets: list[tuple[Any, Any] | None] = [None] * probs.shape[0]
    rows = list(range(probs.shape[0]))
    for k in (64, 1024, vocab):
        k = min(k, vocab)
        part = probs[rows]
        vals, ids = part.topk(k, dim=-1) if k < vocab else part.sort(dim=-1, descending=True)  # [R, k]
        before = vals.cumsum(-1) - vals  # mass of the more likely tokens
        kept = (before <= top_p).sum(-1)  # [R]: the set is a prefix of the sorted candidates
        wider = []
        for j, r in enumerate(rows):
            if k == vocab or before[j, -1] > top_p:
                n = int(kept[j])
                sets[r] = (vals[j, :n], ids[j, :n])
            else:
                wider.append(r)
        rows = wider
        if not rows:
            break
    return sets  # type: ignore[return-value]


def has_stop(tokenizer: Any, ids: list[int], stop: Sequence[str]) -> bool:
    """Whether the decoded tail of ``ids`` contains a stop string."""
    tail = tokenizer.decode(ids[-32:], skip_special_tokens=True)
    return any(s in tail for s in stop)
