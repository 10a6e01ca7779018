"""A fake feedback judge with exact, known preferences, and a small constitution to judge by."""

from __future__ import annotations

import math
import re

from cai.backends.protocol import Generation, ScoringUnsupported
from cai.constitution.schema import Constitution, FeedbackExample, Principle

OPTIONS_RE = re.compile(r"Options:\n\(A\) (.*?)\n\(B\) (.*?)\n\n", re.S)


def last_options(chat) -> tuple[str, str]:
    """The answers shown as (A) and (B) in the chat's last feedback question."""
    for m in reversed(chat):
        found = OPTIONS_RE.findall(m["content"]) if m["role"] == "user" else []
        if found:
            return found[-1]
    raise AssertionError("no options in chat")


class FakeJudge:
    """Prefers the answer containing 'good' (logit ``strength``) and adds ``bias`` to option (A)."""

    kind = "fake"

    def __init__(self, strength=2.0, bias=0.0, scoring=True, letter=None, reasoning="A is good, B is not."):
        self.model = "fake-judge"
        self.strength, self.bias, self.scoring = strength, bias, scoring
        self.letter = letter  # function chat -> text for generated answers, else the right letter
        self.reasoning = reasoning
        self.score_calls: list = []
        self.generate_calls: list = []

    def logit_a(self, chat) -> float:
        a, b = last_options(chat)
        return (self.strength if "good" in a else -self.strength) + self.bias

    def score(self, chats, continuations):
        self.score_calls.append([list(c) for c in chats])
        if not self.scoring:
            raise ScoringUnsupported("no logprobs here")
        out = []
        for chat, conts in zip(chats, continuations):
            assert list(conts) == ["A", "B"]
            x = self.logit_a(chat)
            out.append([-math.log1p(math.exp(-x)), -math.log1p(math.exp(x))])
        return out

    def generate(self, chats, params):
        self.generate_calls.append(([list(c) for c in chats], params))
        out = []
        for i, chat in enumerate(chats):
            if chat[-1]["content"].startswith("Consider") and "step by step" in chat[-1]["content"]:
                text = self.reasoning
            elif self.letter is not None:
                text = self.letter(chat)
            else:
                text = "A" if self.logit_a(chat) > 0 else "B"
            out.append(Generation(text=text, finish_reason="stop", prompt_tokens=1,
                                  completion_tokens=1, index=i))
        return out


def constitution(examples: int = 0) -> Constitution:
    return Constitution(
        name="t", version="1",
        principles=[Principle(id=f"p{i}", critique="c", revision="r", comparison=f"Question {i}?")
                    for i in range(4)],
        feedback_examples=[FeedbackExample(prompt=f"ex{i}", chosen="kind", rejected="rude")
                           for i in range(examples)],
    )
