"""Scoring continuations on the hf backend: the summed log-probability of each continuation after its prompt.

:func:`score_shared` runs each prompt once (its batch-shared prefix taken from
a :class:`~cai.backends.hf.prefix_cache.PrefixStore`), reads one-token
continuations (the labeller's ``A``/``B``) straight off the prompt's last
logits, and runs longer continuations on row copies of the prompt's cache.
:func:`score_naive` recomputes prompt + continuation for every continuation,
the reference the fast path is checked against.

Both take token ids: the caller (:meth:`cai.backends.hf.backend.HFBackend.score`)
tokenizes each prompt + continuation as one text and splits it
(:func:`cai.backends.hf.backend.split_continuations`), so the ids scored here
are those of the continuation in running text, not of the option on its own.
"""

from __future__ import annotations

from typing import Any

from cai.backends.hf.padding import left_pad, right_pad


def score_shared(lm: Any, prefixes: list[list[int]], conts: list[list[list[int]]], pad_id: int,
                 store: Any = None, preallocate: bool = True) -> list[list[float]]:
    """Log-probs of ``conts[b][j]`` after ``prefixes[b]``, each prefix computed once.

    Shapes: B prefixes, R = all continuations, L = longest continuation, V vocab.
    Token t of a continuation is predicted by the prefix's last logit (t = 0)
    or by the continuation's logit t - 1; its log-prob is summed over real
    (unpadded) tokens. E.g. prefix ``[5, 6]``, continuation ``[7, 8]``:
    ``log p(7 | 5 6) + log p(8 | 5 6 7)``.
    """
    import torch

    from cai.backends.hf.cache import cache_kwargs
    from cai.backends.hf.prefix_cache import prefill

    rows = [(b, j) for b, cs in enumerate(conts) for j in range(len(cs))]
    if not rows:
        return [[] for _ in prefixes]
    longest = max(len(conts[b][j]) for b, j in rows)
    pre = prefill(lm, prefixes, pad_id, extra=longest, rows=len(rows) if longest > 1 else 0, store=store,
                  preallocate=preallocate)
    dev = pre.mask.device
    first_logp = torch.log_softmax(pre.logits, dim=-1)  # [B, V]: next-token distribution after each prefix
    chat_of_row = torch.tensor([b for b, _ in rows], device=dev)  # [R]
    cont_ids, cont_mask = right_pad([conts[b][j] for b, j in rows], pad_id, dev)  # [R, L]
    total = first_logp[chat_of_row].gather(1, cont_ids[:, :1]).squeeze(1)  # [R]
    if longest > 1:
        pre.cache.batch_select_indices(chat_of_row)  # [R, ...]: each row gets its chat's prefix cache
        full_mask = torch.cat([pre.mask[chat_of_row], cont_mask], dim=1)  # [R, T + L]
        cont_pos = pre.next_pos[chat_of_row, None] + torch.arange(longest, device=dev)[None, :]  # [R, L]
        logits = lm(input_ids=cont_ids[:, :-1], attention_mask=full_mask[:, :-1],
                    position_ids=cont_pos[:, :-1],
                    **cache_kwargs(lm, pre.cache)).logits.float()  # [R, L-1, V]
        logp = token_logprobs(logits, cont_ids[:, 1:])  # [R, L-1]
        total = total + (logp * cont_mask[:, 1:]).sum(1)
    return regroup(total.tolist(), rows, len(prefixes))


def token_logprobs(logits: Any, targets: Any, rows: int = 4) -> Any:
    """``log p(target)`` at each position, ``[R, L, V]`` logits and ``[R, L]`` targets -> ``[R, L]``.

    ``logit[target] - logsumexp(logits)``, ``rows`` rows at a time: unlike
    ``log_softmax(logits).gather(...)`` it never holds a second ``[R, L, V]``
    tensor (16 answers x 128 tokens x 49k vocab is 400 MB in fp32).

    >>> import torch
    >>> lg = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # one row, two positions, vocab of 2
    >>> token_logprobs(lg, torch.tensor([[1, 0]])).exp()  # p = 1/2, then e^2 / (e^2 + 1)
    tensor([[0.5000, 0.8808]])
    """
    import torch

    return torch.cat([lg.gather(2, tg[..., None]).squeeze(2) - torch.logsumexp(lg, dim=-1)
                      for lg, tg in zip(logits.split(rows), targets.split(rows))])


def score_naive(lm: Any, prefixes: list[list[int]], conts: list[list[list[int]]], pad_id: int,
                last_only: bool = True) -> list[list[float]]:
    """Reference path: recompute prefix + continuation for every continuation (one forward over R rows)."""
    import torch

    dev = next(lm.parameters()).device
    rows = [(b, j) for b, cs in enumerate(conts) for j in range(len(cs))]
    if not rows:
        return [[] for _ in prefixes]
    seqs = [prefixes[b] + conts[b][j] for b, j in rows]
    ids, attention = left_pad(seqs, pad_id, dev)  # [R, T]
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    # Left padding right-aligns every continuation: the last K positions cover all of them.
    k = max(len(conts[b][j]) for b, j in rows) + 1
    keep = {"logits_to_keep": k} if last_only else {}
    logits = lm(input_ids=ids, attention_mask=attention, position_ids=positions, **keep).logits.float()
    logits = logits[:, -k:, :]  # [R, K, V]
    # [R, K-1]
    logp = torch.log_softmax(logits[:, :-1, :], dim=-1).gather(2, ids[:, -k + 1 :, None]).squeeze(2)
    totals = [float(logp[r, -len(conts[b][j]) :].sum()) for r, (b, j) in enumerate(rows)]
    return regroup(totals, rows, len(prefixes))


def regroup(values: list[float], rows: list[tuple[int, int]], n: int) -> list[list[float]]:
    """Flat per-row values back to one list per chat.

    >>> regroup([1.0, 2.0, 3.0], [(0, 0), (0, 1), (2, 0)], 3)
    [[1.0, 2.0], [], [3.0]]
    """
    out: list[list[float]] = [[] for _ in range(n)]
    for v, (b, _) in zip(values, rows):
        out[b].append(v)
    return out
