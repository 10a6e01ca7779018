"""The backend protocol: what every model backend offers the stages.

Two batched operations:

* ``generate(chats, params)``: sample answers to chats (each a list of
  ``{"role", "content"}`` dicts ending with a user turn, or with an assistant
  turn to continue);
* ``score(chats, continuations)``: the log-probability of given continuation
  strings right after each chat's opened assistant turn, the primitive the
  feedback stage uses to read ``(A)`` vs ``(B)``.

Implementations: :mod:`cai.backends.hf.backend` (local transformers) and
:mod:`cai.backends.openai.backend` (any OpenAI-compatible server). Stages take a
backend as an argument; nothing inherits from anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cai.core.records import SamplingParams

Chat = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    """One sampled answer.

    ``index`` is the position of its chat in the request, ``sample`` which of the
    ``n`` samples it is; ``finish_reason`` is ``"stop"`` (EOS or a stop string)
    or ``"length"`` (hit ``max_new_tokens``); ``seed`` the request's own seed.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    index: int = 0
    sample: int = 0
    seed: int | None = None


class ScoringUnsupported(RuntimeError):
    """The backend cannot return log-probabilities (a server without logprobs).

    Callers fall back to generating an answer and parsing it strictly.
    """


@runtime_checkable
class Backend(Protocol):
    """A model behind generate and score. ``model`` and ``kind`` go into provenance."""

    model: str
    kind: str

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[Generation]:
        """Answer every chat ``params.n`` times.

        Returns ``len(chats) * params.n`` generations, chat-major: the samples of
        chat ``i`` are at ``i * n ... i * n + n - 1``.
        """
        ...

    def score(self, chats: Sequence[Chat], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probabilities of ``continuations[i][j]`` after chat ``i``'s assistant turn opens.

        If a chat ends with an assistant message, the continuation extends that
        message (for a reasoning step followed by the answer).
        """
        ...


def request_seed(base_seed: int, chat: Chat, sample: int = 0) -> int:
    """A request's own seed, from the base seed, the chat's content and the sample index.

    It does not depend on batch composition or order, so a resumed run draws the
    same sample for the same request.

    >>> chat = [{"role": "user", "content": "hi"}]
    >>> request_seed(0, chat) == request_seed(0, list(chat))
    True
    >>> request_seed(0, chat, 0) != request_seed(0, chat, 1)
    True
    >>> 0 <= request_seed(7, chat) < 2**31
    True
    """
    blob = json.dumps([base_seed, [dict(m) for m in chat], sample], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string it contains (OpenAI semantics: the stop string is dropped).

    >>> cut_at_stop("one. two. three", [". t"])
    ('one', True)
    >>> cut_at_stop("no stop here", ["###"])
    ('no stop here', False)
    """
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
