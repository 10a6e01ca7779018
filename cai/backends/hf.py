"""Local transformers backend: batched generation and shared-prefix scoring.

Generation runs its own decode loop rather than ``model.generate`` so that every
request samples from its own seeded ``torch.Generator`` (a record does not depend
on which batch it shared, and a resumed run redraws the same sample). Prompts are
sorted by length before batching to cut padding, and rows that finished are
dropped from the batch and its KV cache as they finish.

Scoring computes the shared prompt once and then runs every continuation of that
prompt against a copy of its KV cache, instead of recomputing the prompt per
continuation (``reuse_prefix=False`` does the naive recompute, for checking).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.backends.padding import left_pad, right_pad
from cai.backends.protocol import Chat, Generation, cut_at_stop, request_seed
from cai.records import SamplingParams


class HFBackend:
    """A local transformers causal LM behind the :class:`~cai.backends.Backend` protocol.

    Pass a model name (``default``, a hub id or a local dir), or an already
    loaded ``model`` and ``tokenizer`` (tests, training loops).
    """

    kind = "hf"

    def __init__(
        self,
        model: str = "default",
        *,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        reuse_prefix: bool = True,
        model_obj: Any = None,
        tokenizer: Any = None,
    ):
        from cai.backends.loading import load_causal_lm, load_tokenizer

        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.reuse_prefix = reuse_prefix
        self.tokenizer = tokenizer or load_tokenizer(
            model, trust_remote_code=trust_remote_code, chat_template=chat_template
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = model_obj if model_obj is not None else load_causal_lm(
            model, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.lm.eval()
        self.eos_ids = _eos_ids(self.lm, self.tokenizer)
        # Prefill only needs the last position's logits: skip the [B, T, V] lm-head output where the model allows.
        self._last_only = {"logits_to_keep": 1} if _accepts(self.lm, "logits_to_keep") else {}

    def __repr__(self) -> str:
        return f"HFBackend(model={self.model!r}, device={self.device!r}, batch_size={self.batch_size})"

    @property
    def device(self) -> str:
        return str(next(self.lm.parameters()).device)

    # ----------------------------------------------------------------- rendering
    def render(self, chat: Chat) -> list[int]:
        """Token ids of a chat with the assistant turn opened (or the last assistant turn continued)."""
        chat = [dict(m) for m in chat]
        cont = bool(chat) and chat[-1]["role"] == "assistant"
        text = self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=not cont, continue_final_message=cont
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---------------------------------------------------------------- generation
    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """Answer each chat ``params.n`` times; chat-major order (see the protocol)."""
        import torch

        requests = []  # (index, sample, ids, seed)
        for i, chat in enumerate(chats):
            ids = self.render(chat)
            for s in range(params.n):
                requests.append((i, s, ids, request_seed(params.seed, chat, s)))
        order = sorted(range(len(requests)), key=lambda k: len(requests[k][2]))
        results: dict[int, Generation] = {}
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                outs = self._generate_batch([requests[k][2] for k in chunk], [requests[k][3] for k in chunk], params)
                for k, (token_ids, reason) in zip(chunk, outs):
                    i, s, ids, seed = requests[k]
                    text, reason = self._finish_text(token_ids, reason, params.stop)
                    results[k] = Generation(
                        text=text,
                        finish_reason=reason,
                        prompt_tokens=len(ids),
                        completion_tokens=len(token_ids),
                        index=i,
                        sample=s,
                        seed=seed,
                    )
        return [results[k] for k in range(len(requests))]

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int], params: SamplingParams):
        """Decode one batch. Returns, per row, the generated ids (EOS excluded) and a finish reason."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        input_ids, attention = left_pad(prompts, self.tokenizer.pad_token_id, dev)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.lm.config)
        out = self.lm(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                      past_key_values=cache, use_cache=True, **self._last_only)
        logits = out.logits[:, -1, :].float()
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        live = list(range(len(prompts)))  # original row of each live batch row
        generated: list[list[int]] = [[] for _ in prompts]
        reasons = ["length"] * len(prompts)
        next_pos = positions[:, -1] + 1
        for step in range(params.max_new_tokens):
            tokens = _pick(logits, params, [generators[r] for r in live])
            done = torch.isin(tokens, eos)
            for j, r in enumerate(live):
                if done[j]:
                    reasons[r] = "stop"
                else:
                    generated[r].append(int(tokens[j]))
            if params.stop:
                for j, r in enumerate(live):
                    if not done[j] and _has_stop(self.tokenizer, generated[r], params.stop):
                        done[j] = True
                        reasons[r] = "stop"
            if step == params.max_new_tokens - 1:
                break
            keep = (~done).nonzero().flatten()
            if len(keep) == 0:
                break
            if len(keep) < len(live):  # drop finished rows from the batch and the cache
                cache.batch_select_indices(keep)
                attention, next_pos, tokens = attention[keep], next_pos[keep], tokens[keep]
                live = [live[int(j)] for j in keep]
            attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
            out = self.lm(input_ids=tokens[:, None], attention_mask=attention, position_ids=next_pos[:, None],
                          past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        return list(zip(generated, reasons))

    def _finish_text(self, token_ids: list[int], reason: str, stop: Sequence[str]) -> tuple[str, str]:
        text, cut = cut_at_stop(self.tokenizer.decode(token_ids, skip_special_tokens=True), stop)
        return text, "stop" if cut else reason

    # ------------------------------------------------------------------- scoring
    def score(self, chats: Sequence[Chat], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probability of each continuation after its chat's opened assistant turn."""
        import torch

        if len(chats) != len(continuations):
            raise ValueError(f"{len(chats)} chats but {len(continuations)} continuation lists")
        prefixes = [self.render(c) for c in chats]
        conts = [[self._encode_continuation(t) for t in conts] for conts in continuations]
        out: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(prefixes), self.batch_size):
                p, c = prefixes[start : start + self.batch_size], conts[start : start + self.batch_size]
                out.extend(self._score_shared(p, c) if self.reuse_prefix else self._score_naive(p, c))
        return out

    def _encode_continuation(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"continuation {text!r} encodes to no tokens")
        return ids

    def _score_shared(self, prefixes: list[list[int]], conts: list[list[list[int]]]) -> list[list[float]]:
        """Prefix once per chat; every continuation runs on an index-selected copy of its KV cache."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        ids, attention = left_pad(prefixes, self.tokenizer.pad_token_id, dev)  # [B, T]
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.lm.config)
        out = self.lm(input_ids=ids, attention_mask=attention, position_ids=positions,
                      past_key_values=cache, use_cache=True, **self._last_only)
        first_logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [B, V]: next-token dist after prefix
        rows = [(b, j) for b, cs in enumerate(conts) for j in range(len(cs))]
        if not rows:
            return [[] for _ in prefixes]
        chat_of_row = torch.tensor([b for b, _ in rows], device=dev)
        cont_ids, cont_mask = right_pad([conts[b][j] for b, j in rows], self.tokenizer.pad_token_id, dev)  # [R, L]
        cache.batch_select_indices(chat_of_row)  # [R, ...]: each row gets its chat's prefix cache
        full_mask = torch.cat([attention[chat_of_row], cont_mask], dim=1)
        cont_pos = positions[chat_of_row, -1:] + 1 + torch.arange(cont_ids.shape[1], device=dev)[None, :]
        logits = self.lm(input_ids=cont_ids, attention_mask=full_mask, position_ids=cont_pos,
                         past_key_values=cache, use_cache=True).logits.float()  # [R, L, V]
        # token t of the continuation is predicted by the prefix's last logit (t = 0) or continuation logit t-1.
        total = first_logp[chat_of_row].gather(1, cont_ids[:, :1]).squeeze(1)  # [R]
        if cont_ids.shape[1] > 1:
            logp = torch.log_softmax(logits[:, :-1, :], dim=-1).gather(2, cont_ids[:, 1:, None]).squeeze(2)
            total = total + (logp * cont_mask[:, 1:]).sum(1)
        return _regroup(total.tolist(), rows, len(prefixes))

    def _score_naive(self, prefixes: list[list[int]], conts: list[list[list[int]]]) -> list[list[float]]:
        """Reference path: recompute prefix + continuation for every continuation."""
        import torch

        dev = self.device
        rows = [(b, j) for b, cs in enumerate(conts) for j in range(len(cs))]
        if not rows:
            return [[] for _ in prefixes]
        seqs = [prefixes[b] + conts[b][j] for b, j in rows]
        ids, attention = left_pad(seqs, self.tokenizer.pad_token_id, dev)  # [R, T]
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        # Left padding right-aligns every continuation: the last K positions cover all of them.
        k = max(len(conts[b][j]) for b, j in rows) + 1
        keep = {"logits_to_keep": k} if self._last_only else {}
        logits = self.lm(input_ids=ids, attention_mask=attention, position_ids=positions, **keep).logits.float()
        logits = logits[:, -k:, :]  # [R, K, V]
        logp = torch.log_softmax(logits[:, :-1, :], dim=-1).gather(2, ids[:, -k + 1 :, None]).squeeze(2)  # [R, K-1]
        totals = []
        for r, (b, j) in enumerate(rows):
            n = len(conts[b][j])
            totals.append(float(logp[r, -n:].sum()))
        return _regroup(totals, rows, len(prefixes))


# ----------------------------------------------------------------------- helpers
def _accepts(model: Any, arg: str) -> bool:
    import inspect

    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config):
        eos = getattr(src, "eos_token_id", None) if src is not None else None
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _pick(logits, params: SamplingParams, generators: list):
    """Next token per row: argmax when greedy, else top-p sampling with each row's own generator.

    logits: [B, V] float. Returns [B] long.
    """
    import torch

    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)
    probs = probs.cpu()
    picks = [int(torch.multinomial(probs[j], 1, generator=g)) for j, g in enumerate(generators)]
    return torch.tensor(picks, device=logits.device)


def _has_stop(tokenizer: Any, ids: list[int], stop: Sequence[str]) -> bool:
    tail = tokenizer.decode(ids[-32:], skip_special_tokens=True)
    return any(s in tail for s in stop)


def _regroup(values: list[float], rows: list[tuple[int, int]], n: int) -> list[list[float]]:
    """Flat per-row values back to one list per chat.

    >>> _regroup([1.0, 2.0, 3.0], [(0, 0), (0, 1), (2, 0)], 3)
    [[1.0, 2.0], [], [3.0]]
    """
    out: list[list[float]] = [[] for _ in range(n)]
    for v, (b, _) in zip(values, rows):
        out[b].append(v)
    return out
