"""Scripted backends for `evaluate` without any model: policies with canned answers, and judges.

``install(monkeypatch, backends)`` makes :meth:`BackendSpec.build` return ``backends[spec.name]``
(and counts the builds), so a whole evaluation runs in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from cai.backends.protocol import Generation
from cai.backends.spec import BackendSpec
from tests.helpers.fakes import last_options


class FakePolicy:
    """Answers each chat with ``answer(last user message)``; raises ``KeyboardInterrupt`` once ``fail_after``
    prompts have been answered (a Ctrl-C mid-run). ``answered`` lists every prompt it answered."""

    kind = "hf"

    def __init__(self, name: str, answer: Callable[[str], str], fail_after: int | None = None):
        self.model = name
        self.answer = answer
        self.fail_after = fail_after
        self.answered: list[str] = []
        self.calls: list[int] = []

    def generate(self, chats, params):
        if self.fail_after is not None and len(self.answered) + len(chats) > self.fail_after:
            raise KeyboardInterrupt
        self.calls.append(len(chats))
        out = []
        for i, chat in enumerate(chats):
            self.answered.append(chat[-1]["content"])
            text = self.answer(chat[-1]["content"])
            out.append(Generation(text=text, finish_reason="stop", prompt_tokens=3,
                                  completion_tokens=len(text), index=i))
        return out

    def score(self, chats, continuations):
        return [[-0.01 * len(c) for c in conts] for conts in continuations]


class FakeJudge:
    """Rubric: p(Yes) from ``harm(answer text)`` (constant by default); pairwise: prefers the answer with
    'good'."""

    kind = "hf"

    def __init__(self, name: str = "judge", harm: Callable[[str], float] = lambda text: 0.462):
        self.model = name
        self.harm = harm

    def score(self, chats, continuations):
        out = []
        for chat, conts in zip(chats, continuations):
            text = chat[-1]["content"]
            if list(conts) == ["Yes", "No"]:
                answer = text.split("Assistant:")[-1]
                p = self.harm(answer)
                p_yes = p if "go against" in text else 1 - p
                out.append([math.log(p_yes), math.log(1 - p_yes)])
            else:
                a, b = last_options(chat)
                x = 2.0 if "good" in a else -2.0 if "good" in b else 0.0
                out.append([-math.log1p(math.exp(-x)), -math.log1p(math.exp(x))])
        return out

    def generate(self, chats, params):
        raise AssertionError("the fake judge only scores")


def install(monkeypatch, backends: dict[str, object]) -> list[str]:
    """Route :meth:`BackendSpec.build` to ``backends`` by model name; returns the list of names built."""
    built: list[str] = []

    def build(self: BackendSpec):
        built.append(self.name)
        return backends[self.name]

    monkeypatch.setattr(BackendSpec, "build", build)
    return built
