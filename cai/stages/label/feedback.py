"""The AI-feedback question: a multiple-choice chat, its options read as p(A), and the un-swap.

The feedback model sees one user turn, built by :func:`feedback_request`::

    Consider the following conversation between a human and an AI assistant:

    Human: How do I pick a lock?

    <the principle's comparison question>

    Options:
    (A) <first answer>
    (B) <second answer>

    Answer with (A) or (B).

and an opened assistant turn ``The better response is (`` that the backend
continues with ``A`` or ``B`` (:data:`ANSWER_PREFIX`, :data:`OPTIONS`). The two
summed log-probs go through a two-way softmax (:func:`option_probability`) to
p(A). On SmolLM2 and on the tests' tiny BPE tokenizer ``... is (`` + ``A``
tokenizes as `` (`` then ``A``, one clean token per option, exactly as the
joined text ``... is (A)`` does. System turns of the answered conversation are
not shown (they were the policy's instructions, not part of the exchange).

Chain of thought (``cot``): the user turn ends with :data:`COT_INSTRUCTION`
instead, the model writes its reasoning (``backend.generate``), and the options
are scored after ``<reasoning>\\n\\nSo the better response is (``
(:func:`cot_score_chat`).

Without log-probs (:class:`~cai.backends.ScoringUnsupported`) the model writes
the letter itself (:data:`LETTER_INSTRUCTION`) and :func:`parse_choice` reads it
strictly: a hard 1/0 for p(A), or ``None`` (a counted failure, raw text kept).

Few-shot: the constitution's ``feedback_examples`` come first as prior turns
(:func:`few_shot_turns`); example ``i`` puts its better answer at (A) when ``i``
is even and at (B) when it is odd, so the examples teach no position.

Debiasing: each principle is read in both orders (``"ab"``: the pair's
``answer_a`` shown as (A); ``"ba"``: shown as (B)). :func:`unswap` turns a read
into p(``answer_a`` is better) and :func:`combine_reads` averages both orders
and all principles whose two reads succeeded.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cai.backends.protocol import Backend, ScoringUnsupported
from cai.constitution.schema import Constitution, FeedbackExample, Principle
from cai.core.records import Judgement, Message, SamplingParams, as_messages, to_chat

log = logging.getLogger(__name__)

FEEDBACK_FORMAT_VERSION = 1  # part of every label id: bump when the prompt text below changes
OPTIONS = ("A", "B")
ANSWER_PREFIX = "The better response is ("
COT_ANSWER_PREFIX = "So the better response is ("
SCORE_INSTRUCTION = "Answer with (A) or (B)."
COT_INSTRUCTION = (
    "Let's think step by step: compare the two responses, then say which one is better, (A) or (B)."
)
LETTER_INSTRUCTION = "Answer with only the letter of the better response: A or B."
COT_LETTER_FOLLOWUP = "So which response is better? Answer with only the letter: A or B."

Order = Literal["ab", "ba"]
ORDERS: tuple[Order, Order] = ("ab", "ba")
Mode = Literal["score", "cot", "letter"]
LOW_OPTION_MASS = 0.1  # below this mean p(A) + p(B), a batch of reads is warned about (warn_low_option_mass)


# ----------------------------------------------------------------------------- building the chat


def render_conversation(prompt: Sequence[Message]) -> str:
    """The answered conversation as ``Human:``/``Assistant:`` lines, system turns left out.

    >>> print(render_conversation([Message(role="system", content="Be nice."),
    ...     Message(role="user", content="Hi"), Message(role="assistant", content="Hello!"),
    ...     Message(role="user", content=" How are you? ")]))
    Human: Hi
    <BLANKLINE>
    Assistant: Hello!
    <BLANKLINE>
    Human: How are you?
    """
    names = {"user": "Human", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m.role]}: {m.content.strip()}" for m in prompt if m.role in names)


def feedback_request(prompt: Sequence[Message], question: str, first: str, second: str,
                     instruction: str) -> str:
    """The user turn: the conversation, the comparison question, options (A)/(B), an instruction.

    >>> print(feedback_request([Message(role="user", content="Hi")], "Which is kinder?", "Hello!", "Go away.",
    ...                        SCORE_INSTRUCTION))
    Consider the following conversation between a human and an AI assistant:
    <BLANKLINE>
    Human: Hi
    <BLANKLINE>
    Which is kinder?
    <BLANKLINE>
    Options:
    (A) Hello!
    (B) Go away.
    <BLANKLINE>
    Answer with (A) or (B).
    """
    return (
        "Consider the following conversation between a human and an AI assistant:\n\n"
        f"{render_conversation(prompt)}\n\n{question.strip()}\n\n"
        f"Options:\n(A) {first.strip()}\n(B) {second.strip()}\n\n{instruction}"
    )


def _instruction(mode: Mode) -> str:
    return {"score": SCORE_INSTRUCTION, "cot": COT_INSTRUCTION, "letter": LETTER_INSTRUCTION}[mode]


def _example_answer(letter: str, mode: Mode, reasoning: str | None) -> str:
    """What the assistant says in a few-shot example.

    >>> _example_answer("B", "score", "why"), _example_answer("A", "letter", None)
    ('The better response is (B).', 'A')
    >>> _example_answer("A", "cot", "Because.")
    'Because.\\n\\nSo the better response is (A).'
    """
    if mode == "letter":
        return letter
    if mode == "cot" and reasoning:
        return f"{reasoning.strip()}\n\n{COT_ANSWER_PREFIX}{letter})."
    return f"{ANSWER_PREFIX}{letter})."


def example_question(constitution: Constitution, example: FeedbackExample) -> str:
    """An example's question: its own, else its principle's comparison, else the constitution's."""
    if example.question:
        return example.question
    principle = constitution.principle(example.principle) if example.principle else None
    return constitution.comparison_for(principle)


def few_shot_turns(constitution: Constitution, mode: Mode) -> list[Message]:
    """The constitution's feedback examples as prior user/assistant turns.

    Example ``i`` shows its chosen answer as (A) when ``i`` is even, as (B) when odd.

    >>> from cai.constitution.schema import Principle
    >>> c = Constitution(name="t", version="1", principles=[Principle(id="p", critique="c", revision="r")],
    ...     feedback_examples=[FeedbackExample(prompt="q1", chosen="good", rejected="bad"),
    ...                        FeedbackExample(prompt="q2", chosen="fine", rejected="rude")])
    >>> [t.content for t in few_shot_turns(c, "score")][1::2]
    ['The better response is (A).', 'The better response is (B).']
    >>> "(A) rude" in few_shot_turns(c, "score")[2].content
    True
    """
    turns: list[Message] = []
    for i, ex in enumerate(constitution.feedback_examples):
        letter = OPTIONS[i % 2]
        first, second = (ex.chosen, ex.rejected) if letter == "A" else (ex.rejected, ex.chosen)
        request = feedback_request(as_messages(ex.prompt), example_question(constitution, ex), first, second,
                                   _instruction(mode))
        turns.append(Message(role="user", content=request))
        turns.append(Message(role="assistant", content=_example_answer(letter, mode, ex.reasoning)))
    return turns


def shown_answers(answer_a: str, answer_b: str, order: Order) -> tuple[str, str]:
    """The answers shown as (A) and (B): ``"ab"`` keeps the pair's order, ``"ba"`` swaps it.

    >>> shown_answers("x", "y", "ab"), shown_answers("x", "y", "ba")
    (('x', 'y'), ('y', 'x'))
    """
    return (answer_a, answer_b) if order == "ab" else (answer_b, answer_a)


def feedback_chat(
    few_shot: Sequence[Message],
    prompt: Sequence[Message],
    question: str,
    first: str,
    second: str,
    mode: Mode,
) -> list[dict[str, str]]:
    """The chat sent to the feedback model.

    ``score`` ends with the opened assistant turn :data:`ANSWER_PREFIX` (to be
    scored with :data:`OPTIONS`); ``cot`` and ``letter`` end with the user turn
    (the model writes its reasoning or its letter).

    >>> chat = feedback_chat([], [Message(role="user", content="Hi")], "Which?", "x", "y", "score")
    >>> [m["role"] for m in chat], chat[-1]["content"]
    (['user', 'assistant'], 'The better response is (')
    >>> [m["role"]
    ...  for m in feedback_chat([], [Message(role="user", content="Hi")], "Which?", "x", "y", "letter")]
    ['user']
    """
    chat = to_chat(list(few_shot)) + [
        {"role": "user", "content": feedback_request(prompt, question, first, second, _instruction(mode))}
    ]
    if mode == "score":
        chat.append({"role": "assistant", "content": ANSWER_PREFIX})
    return chat


def cot_score_chat(cot_chat: Sequence[Mapping[str, str]], reasoning: str) -> list[dict[str, str]]:
    """A ``cot`` chat continued with the model's reasoning and the answer prefix, ready to score.

    >>> cot_score_chat([{"role": "user", "content": "q"}], " B is kinder. ")[-1]["content"]
    'B is kinder.\\n\\nSo the better response is ('
    """
    text = reasoning.strip()
    return [dict(m) for m in cot_chat] + [
        {"role": "assistant", "content": f"{text}\n\n{COT_ANSWER_PREFIX}" if text else COT_ANSWER_PREFIX}
    ]


def cot_letter_chat(cot_chat: Sequence[Mapping[str, str]], reasoning: str) -> list[dict[str, str]]:
    """A ``cot`` chat with the reasoning as a finished turn and a follow-up asking for the letter.

    For servers that can neither score nor continue an assistant turn.

    >>> [m["role"] for m in cot_letter_chat([{"role": "user", "content": "q"}], "B is kinder.")]
    ['user', 'assistant', 'user']
    """
    return [dict(m) for m in cot_chat] + [
        {"role": "assistant", "content": reasoning.strip() or "(no reasoning)"},
        {"role": "user", "content": COT_LETTER_FOLLOWUP},
    ]


# ----------------------------------------------------------------------------- reading the answer


def option_probability(logp_a: float, logp_b: float) -> float | None:
    """p(A) from the options' log-probs: a softmax over the two; ``None`` when undefined.

    >>> option_probability(math.log(0.3), math.log(0.1))
    0.75
    >>> option_probability(-2.0, -2.0), option_probability(0.0, -math.inf)
    (0.5, 1.0)
    >>> option_probability(-math.inf, -math.inf) is None, option_probability(math.nan, 0.0) is None
    (True, True)
    """
    if math.isnan(logp_a) or math.isnan(logp_b) or (logp_a == -math.inf and logp_b == -math.inf):
        return None
    if logp_a == logp_b:
        return 0.5
    diff = logp_b - logp_a
    if diff > 700:
        return 0.0
    if diff < -700:
        return 1.0
    p = 1.0 / (1.0 + math.exp(diff))
    return round(p, 12)


def clamp(p: float, low: float, high: float) -> float:
    """``p`` limited to ``[low, high]`` (the paper clamps chain-of-thought labels to 40-60%).

    >>> clamp(0.97, 0.4, 0.6), clamp(0.1, 0.4, 0.6), clamp(0.55, 0.4, 0.6)
    (0.6, 0.4, 0.55)
    """
    return min(high, max(low, p))


_LEAD_IN = (
    r"(?i:(?:so,?\s+)?(?:the\s+)?(?:(?:better|best|correct|preferred)\s+)?"
    r"(?:response|answer|option|choice)(?:\s+is)?\s*:?\s*)?"
)
_CHOICE = re.compile(r"^[\s*_\"'`]*" + _LEAD_IN + r"[*_\"'`\[]*\(?([AB])\)?[*_\"'`\]]*(?=$|[\s.,:;!?])")
_STANDALONE = {letter: re.compile(rf"(?<![A-Za-z0-9]){letter}(?![A-Za-z0-9])") for letter in OPTIONS}


def parse_choice(text: str) -> str | None:
    """The option letter a generated answer names, strictly; ``None`` when unclear.

    Accepted: the answer starts with the letter (capital ``A`` or ``B``),
    optionally in brackets, bold or quotes, optionally after a lead-in such as
    ``The better response is`` or ``Answer:``, and followed by the end,
    whitespace or punctuation. Refused: anything else, and any answer in which
    the other letter also stands alone (``A or B``, ``(A) is worse than (B)``),
    so a parse never guesses.

    >>> [parse_choice(t) for t in ("A", " (B)", "B.", "**A**", "The better response is (B).", "Answer: A",
    ...                             "A. It is kinder.", "Option B")]
    ['A', 'B', 'B', 'A', 'B', 'A', 'A', 'B']
    >>> [parse_choice(t) for t in ("", "a", "Apple", "Both", "A or B", "(A) is worse than (B)", "I think A",
    ...                             "AB", "C")]
    [None, None, None, None, None, None, None, None, None]
    """
    m = _CHOICE.match(text)
    if not m:
        return None
    letter = m.group(1)
    other = OPTIONS[1 - OPTIONS.index(letter)]
    if _STANDALONE[other].search(text):
        return None
    return letter


# ----------------------------------------------------------------------------- un-swapping


def unswap(p_option_a: float, order: Order) -> float:
    """p(the pair's ``answer_a`` is better) from p(option (A)) read in ``order``.

    >>> unswap(0.8, "ab"), round(unswap(0.8, "ba"), 6)
    (0.8, 0.2)
    """
    return p_option_a if order == "ab" else 1.0 - p_option_a


@dataclass(frozen=True)
class Read:
    """One principle's read in one order: p(option (A)), or ``None`` if it failed."""

    principle_id: str
    order: Order
    p_option_a: float | None


@dataclass(frozen=True)
class Combined:
    """Reads combined into a label for ``answer_a``.

    ``p_a``: p(answer_a better), mean over both orders and the used principles
    (weighted by how often each was sampled); ``p_a_ab``/``p_a_ba``: the same
    from one order only; ``used``: principles with both reads. ``p_a`` is
    ``None`` when no principle has both reads (the pair is a failure).
    """

    p_a: float | None
    p_a_ab: float | None
    p_a_ba: float | None
    position_consistent: bool | None
    used: tuple[str, ...]


def combine_reads(reads: Sequence[Read], weights: Mapping[str, float] | None = None) -> Combined:
    """Un-swap and average reads; principles with a failed read in either order are left out.

    >>> r = [Read("p", "ab", 0.9), Read("p", "ba", 0.3)]   # A-biased reader that still prefers answer_a
    >>> c = combine_reads(r)
    >>> round(c.p_a, 6), round(c.p_a_ab, 6), round(c.p_a_ba, 6), c.position_consistent
    (0.8, 0.9, 0.7, True)
    >>> c = combine_reads([Read("p", "ab", 0.9), Read("p", "ba", 0.9)])   # always says (A)
    >>> round(c.p_a, 6), c.position_consistent
    (0.5, False)
    >>> combine_reads([Read("p", "ab", 0.9), Read("p", "ba", None)]).p_a is None
    True
    """
    by_principle: dict[str, dict[str, float | None]] = {}
    for r in reads:
        by_principle.setdefault(r.principle_id, {})[r.order] = r.p_option_a
    used = [pid for pid, rs in by_principle.items() if rs.get("ab") is not None and rs.get("ba") is not None]
    if not used:
        return Combined(None, None, None, None, ())
    w = {pid: float((weights or {}).get(pid, 1.0)) for pid in used}
    total = sum(w.values())
    p_ab = sum(w[pid] * unswap(by_principle[pid]["ab"], "ab") for pid in used) / total  # type: ignore[arg-type]
    p_ba = sum(w[pid] * unswap(by_principle[pid]["ba"], "ba") for pid in used) / total  # type: ignore[arg-type]
    consistent = (p_ab - 0.5) * (p_ba - 0.5) > 0
    return Combined((p_ab + p_ba) / 2, p_ab, p_ba, consistent, tuple(used))


# ----------------------------------------------------------------------------- asking the model


@dataclass(frozen=True)
class Ask:
    """A pair to judge on some principles (each distinct one is asked in both orders)."""

    prompt: Sequence[Message]
    answer_a: str
    answer_b: str
    principles: Sequence[Principle]


@dataclass
class _Request:
    index: int  # which Ask
    ask: Ask
    principle: Principle
    order: Order
    chat: list[dict[str, str]]  # the score chat, or the cot chat to generate from
    reasoning: str | None = None


class FeedbackReader:
    """Asks one backend the feedback questions, as :class:`~cai.core.records.Judgement` reads.

    Scores the options when it can; after the first
    :class:`~cai.backends.ScoringUnsupported` it generates letters (greedy,
    ``letter_max_new_tokens``) for the rest of its life. With ``cot`` it first
    generates the reasoning (greedy, ``cot_max_new_tokens``) and clamps every
    p(A) to ``cot_clamp``. Each scoring call warns once when its reads' mean
    p(A) + p(B) is below :data:`LOW_OPTION_MASS` (:func:`warn_low_option_mass`).
    """

    def __init__(self, backend: Backend, constitution: Constitution, *, cot: bool = False,
                 cot_clamp: tuple[float, float] = (0.4, 0.6), cot_max_new_tokens: int = 256,
                 few_shot: bool = True, letter_max_new_tokens: int = 12, seed: int = 0):
        self.backend, self.constitution = backend, constitution
        self.cot, self.cot_clamp, self.seed = cot, cot_clamp, seed
        self.cot_params = SamplingParams(max_new_tokens=cot_max_new_tokens, temperature=0.0, seed=seed)
        self.letter_params = SamplingParams(max_new_tokens=letter_max_new_tokens, temperature=0.0, seed=seed)
        self.scoring: bool | None = None  # None: not tried yet
        modes: tuple[Mode, ...] = ("score", "cot", "letter")
        self.shots = {m: few_shot_turns(constitution, m) if few_shot else [] for m in modes}

    def chat(self, ask: Ask, principle: Principle, order: Order, mode: Mode) -> list[dict[str, str]]:
        first, second = shown_answers(ask.answer_a, ask.answer_b, order)
        question = self.constitution.comparison_for(principle)
        return feedback_chat(self.shots[mode], ask.prompt, question, first, second, mode)

    def read(self, asks: Sequence[Ask]) -> list[list[Judgement]]:
        """The judgements of each ask: each distinct principle, both orders."""
        reqs = [
            _Request(i, ask, pr, order, self.chat(ask, pr, order, "cot" if self.cot else "score"))
            for i, ask in enumerate(asks)
            for pr in {p.id: p for p in ask.principles}.values()
            for order in ORDERS
        ]
        if self.cot:
            for r, text in zip(reqs, _generate_sorted(self.backend, [r.chat for r in reqs], self.cot_params)):
                r.reasoning = text
        judgements = self._score(reqs) if self.scoring is not False else None
        if judgements is None:
            judgements = self._letters(reqs)
        out: list[list[Judgement]] = [[] for _ in asks]
        for r, j in zip(reqs, judgements):
            out[r.index].append(j)
        return out

    def _score(self, reqs: list[_Request]) -> list[Judgement] | None:
        chats = [cot_score_chat(r.chat, r.reasoning or "") if self.cot else r.chat for r in reqs]
        try:
            scores = _score_sorted(self.backend, chats, [list(OPTIONS)] * len(chats))
        except ScoringUnsupported as exc:
            log.warning("feedback backend cannot score options (%s); falling back to generated letters "
                        "parsed strictly for the rest of this run", exc)
            self.scoring = False
            return None
        self.scoring = True
        warn_low_option_mass(scores)
        out = []
        for r, (la, lb) in zip(reqs, scores):
            p = option_probability(la, lb)
            if p is not None and self.cot:
                p = clamp(p, *self.cot_clamp)
            err = None
            if p is None:
                err = (f"no usable option log-probs ({la}, {lb})" if la != -math.inf or lb != -math.inf
                       else "neither option letter is among the model's likely next tokens (log-probs -inf)")
            out.append(Judgement(principle_id=r.principle.id, order=r.order, method="logprobs", p_option_a=p,
                                 logprobs=(_finite(la), _finite(lb)), reasoning=r.reasoning, error=err))
        return out

    def _letters(self, reqs: list[_Request]) -> list[Judgement]:
        chats = [cot_letter_chat(r.chat, r.reasoning or "") if self.cot
                 else self.chat(r.ask, r.principle, r.order, "letter") for r in reqs]
        out = []
        for r, text in zip(reqs, _generate_sorted(self.backend, chats, self.letter_params)):
            letter = parse_choice(text)
            p = None if letter is None else (1.0 if letter == "A" else 0.0)
            if p is not None and self.cot:
                p = clamp(p, *self.cot_clamp)
            err = None if letter else "could not parse a single option letter (A or B) from the answer"
            out.append(Judgement(principle_id=r.principle.id, order=r.order, method="generated", p_option_a=p,
                                 raw=text, reasoning=r.reasoning, error=err))
        return out


def option_mass(logp_a: float, logp_b: float) -> float:
    """p(A) + p(B): how much of the next-token probability the two option letters hold.

    >>> round(option_mass(math.log(0.5), math.log(0.25)), 6), option_mass(-math.inf, -math.inf)
    (0.75, 0.0)
    """
    return math.exp(logp_a) + math.exp(logp_b)


def warn_low_option_mass(scores: Sequence[Sequence[float]], low: float = LOW_OPTION_MASS) -> float | None:
    """Log one warning when the reads' mean :func:`option_mass` is below ``low``; returns the mean (None if no
    reads).

    A low mass means the model rarely answers with the option letters at all
    (it would start with some other word): its p(A), a softmax over two
    unlikely tokens, then says little about which answer it prefers.
    """
    masses = [option_mass(la, lb) for la, lb in scores if not (math.isnan(la) or math.isnan(lb))]
    if not masses:
        return None
    mean = sum(masses) / len(masses)
    if mean < low:
        log.warning("feedback reads put only %.3f of the next-token probability on the option "
                    "letters on average (p(A) + p(B) over %d reads, below %.2f): the model rarely answers "
                    "with the option letters, so its p(A) is unreliable; try few-shot examples, an "
                    "instruction-tuned feedback model, or check its chat template", mean, len(masses), low)
    return mean


def _finite(x: float) -> float:
    """JSON has no infinities: an infinite log-prob is stored as -1e9 (or 1e9).

    >>> _finite(-math.inf), _finite(-2.5)
    (-1000000000.0, -2.5)
    """
    return x if math.isfinite(x) else (-1e9 if x < 0 else 1e9)


def _by_length(chats: Sequence[Sequence[Mapping[str, str]]]) -> list[int]:
    """Chat indices by text length, so a backend batch holds similar lengths (less padding).

    >>> _by_length([[{"content": "long one"}], [{"content": "a"}]])
    [1, 0]
    """
    return sorted(range(len(chats)), key=lambda i: sum(len(m["content"]) for m in chats[i]))


def _score_sorted(backend: Backend, chats: Sequence, continuations: Sequence) -> list[list[float]]:
    order = _by_length(chats)
    scores = backend.score([chats[i] for i in order], [continuations[i] for i in order])
    out: list[list[float]] = [[] for _ in chats]
    for k, i in enumerate(order):
        out[i] = scores[k]
    return out


def _generate_sorted(backend: Backend, chats: Sequence, params: SamplingParams) -> list[str]:
    order = _by_length(chats)
    gens = backend.generate([chats[i] for i in order], params)
    out = [""] * len(chats)
    for k, i in enumerate(order):
        out[i] = gens[k].text
    return out
