"""Local transformers backend: batched generation and shared-prefix scoring.

Generation runs its own decode loop (:mod:`cai.backends.hf.decode`) rather than
``model.generate`` so that every request samples from its own seeded
``torch.Generator`` (a record does not depend on which batch it shared, and a
resumed run redraws the same sample). Prompts are sorted by length before
batching to cut padding, the KV cache is preallocated
(:mod:`cai.backends.hf.cache`), and rows that finished are dropped from the
batch and its cache as they finish.

Both operations compute a prefix that all prompts of a batch share (system
prompt, few-shot turns) once and keep it for the next batch and call while the
weights are unchanged (:mod:`cai.backends.hf.prefix_cache`). Scoring runs each
prompt once for all its continuations (:mod:`cai.backends.hf.score`), in
batches of prompts that share more than the common prefix (the two orders of a
feedback pair), else of similar length
(:func:`~cai.backends.hf.prefix_cache.prefix_batches`: on a CPU, padding a
few-hundred-token prompt to its batch's longest is pure waste).
``reuse_prefix=False`` turns all prefix reuse off and scores by naive
recompute per continuation, the reference for checking.

A continuation is scored as it tokenizes in running text after its prompt
(:func:`split_continuations`), never tokenized on its own: SentencePiece
tokenizers would read a lone option ``A`` as the word-start token ``▁A``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cai.backends.protocol import Chat, Generation, cut_at_stop, request_seed
from cai.core.records import SamplingParams


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
        from cai.backends.hf.loading import eos_token_ids, load_causal_lm, load_tokenizer

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
        self.eos_ids = set(eos_token_ids(self.lm, self.tokenizer))
        self.preallocate = True  # preallocated KV cache (off: transformers' DynamicCache, for comparison)
        self._store = None  # PrefixStore, made on first use
        # Scoring batches: the most padding a batch may carry (None: 10% on CPU, where padding is pure waste,
        # else 50%).
        self.max_padding: float | None = None

    def __repr__(self) -> str:
        return f"HFBackend(model={self.model!r}, device={self.device!r}, batch_size={self.batch_size})"

    @property
    def device(self) -> str:
        return str(next(self.lm.parameters()).device)

    # ----------------------------------------------------------------- rendering
    def render_text(self, chat: Chat) -> str:
        """A chat's text with the assistant turn opened (or the last assistant turn continued)."""
        chat = [dict(m) for m in chat]
        cont = bool(chat) and chat[-1]["role"] == "assistant"
        return self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=not cont, continue_final_message=cont
        )

    def render(self, chat: Chat) -> list[int]:
        """Token ids of a chat with the assistant turn opened (or the last assistant turn continued)."""
        return self._ids(self.render_text(chat))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---------------------------------------------------------------- generation
    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """Answer each chat ``params.n`` times; chat-major order (see the protocol)."""
        import torch

        from cai.backends.hf.decode import decode
        from cai.backends.hf.prefix_cache import prefill

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
                pre = prefill(self.lm, [requests[k][2] for k in chunk], self.tokenizer.pad_token_id,
                              extra=params.max_new_tokens, store=self.prefix_store(),
                              preallocate=self.preallocate)
                outs = decode(self.lm, pre, [requests[k][3] for k in chunk], params, self.eos_ids,
                              self.tokenizer)
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

    def prefix_store(self):
        """The store of shared-prefix keys/values, or None when ``reuse_prefix`` is off."""
        if not self.reuse_prefix:
            return None
        if self._store is None:
            from cai.backends.hf.prefix_cache import PrefixStore

            self._store = PrefixStore()
        return self._store

    def _finish_text(self, token_ids: list[int], reason: str, stop: Sequence[str]) -> tuple[str, str]:
        text, cut = cut_at_stop(self.tokenizer.decode(token_ids, skip_special_tokens=True), stop)
        return text, "stop" if cut else reason

    # ------------------------------------------------------------------- scoring
    def score(self, chats: Sequence[Chat], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probability of each continuation after its chat's opened assistant turn."""
        import torch

        from cai.backends.hf.prefix_cache import prefix_batches
        from cai.backends.hf.score import score_naive, score_shared

        if len(chats) != len(continuations):
            raise ValueError(f"{len(chats)} chats but {len(continuations)} continuation lists")
        encoded = [self.encode_continuations(self.render_text(c), conts)
                   for c, conts in zip(chats, continuations)]
        prefixes = [p for p, _ in encoded]
        conts = [cs for _, cs in encoded]
        pad = self.tokenizer.pad_token_id
        out: list[list[float]] = [[] for _ in prefixes]
        padding = self.max_padding if self.max_padding is not None else (0.1 if self.device == "cpu" else 0.5)
        with torch.inference_mode():
            for bucket in prefix_batches(prefixes, self.batch_size, padding):
                p, c = [prefixes[i] for i in bucket], [conts[i] for i in bucket]
                if self.reuse_prefix:
                    scores = score_shared(self.lm, p, c, pad, self.prefix_store(), self.preallocate)
                else:
                    scores = score_naive(self.lm, p, c, pad, _accepts(self.lm, "logits_to_keep"))
                for i, s in zip(bucket, scores):
                    out[i] = s
        return out

    def encode_continuations(self, prefix_text: str,
                             continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        """Token ids of a prompt and of its continuations as they tokenize in running text.

        A continuation is not tokenized on its own: SentencePiece tokenizers (Llama-2, Mistral v0.x)
        turn a lone ``"A"`` into ``▁A``, a word start, while ``... is (A`` ends in ``▁(`` + ``A``. The
        prompt's text and prompt + continuation are tokenized whole and split by
        :func:`split_continuations`.
        """
        return split_continuations(self._ids(prefix_text),
                                   [self._ids(prefix_text + c) for c in continuations], continuations)


# ----------------------------------------------------------------------- helpers
def _accepts(model: Any, arg: str) -> bool:
    import inspect

    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def split_continuations(prefix: Sequence[int], joined: Sequence[Sequence[int]],
                        texts: Sequence[str] | None = None) -> tuple[list[int], list[list[int]]]:
    """The prompt's ids and each continuation's, from the prompt and each prompt + continuation tokenized
    whole.

    All continuations are scored after the same prompt ids: the longest token prefix that the prompt
    shares with every joined sequence. Where a tokenizer merges across the boundary (the prompt's last
    ``▁(`` and an option ``A`` become one ``▁(A``), that prompt is one token shorter and every
    continuation starts with the re-tokenized tail (``log p(▁(A)`` against ``log p(▁() + log p(B)``, both
    the probability of the text after the shorter prompt).

    >>> split_continuations([1, 2, 3], [[1, 2, 3, 7], [1, 2, 3, 8, 9]])   # clean boundary
    ([1, 2, 3], [[7], [8, 9]])
    >>> split_continuations([1, 2, 3], [[1, 2, 5], [1, 2, 3, 8]])         # 3 + "A" merged into 5
    ([1, 2], [[5], [3, 8]])
    >>> split_continuations([1, 2], [[1, 2]], [""])
    Traceback (most recent call last):
    ...
    ValueError: continuation '' encodes to no tokens
    """
    from cai.backends.hf.prefix_cache import common_prefix_len

    texts = list(texts) if texts is not None else [f"#{j}" for j in range(len(joined))]
    for t, ids in zip(texts, joined):
        if len(ids) <= common_prefix_len(prefix, ids):
            raise ValueError(f"continuation {t!r} encodes to no tokens")
    m = min((common_prefix_len(prefix, ids) for ids in joined), default=len(prefix))
    if m == 0 and joined:
        raise ValueError("the prompt and its continuations share no leading token")
    return list(prefix[:m]), [list(ids[m:]) for ids in joined]
