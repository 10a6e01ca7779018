"""Reading option log-probabilities off an OpenAI-compatible server's ``top_logprobs``.

Pure functions, used by :meth:`cai.backends.openai.backend.OpenAIBackend.score`:
:func:`first_top_logprobs` takes the first generated position's top log-probs
out of a chat-completions response, :func:`option_logprobs` reads each answer
option's log-prob from them (the matching rule, and what an option that is not
listed gets, are documented there), and :func:`is_short_option` /
:func:`check_short_options` say which continuations can be read off that one
position at all (short options; not whole answers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cai.backends.protocol import ScoringUnsupported

MAX_OPTION_CHARS = 8  # longest continuation (stripped) that score takes as one token: see is_short_option
_OPTION_PUNCTUATION = " \t\r\n()[]{}<>.,:;!?\"'`*"


def _option_core(option: str) -> str:
    """An option without surrounding whitespace and brackets/punctuation: ``(A)`` -> ``A``.

    >>> [_option_core(o) for o in ("(A)", " B.", "Yes", "[[1]]", "()")]
    ['A', 'B', 'Yes', '1', '()']
    """
    key = option.strip()
    return key.strip(_OPTION_PUNCTUATION) or key


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def option_logprobs(top_logprobs: Sequence[Mapping[str, Any]], options: Sequence[str]) -> list[float]:
    """Log-probabilities of answer options read off one position's ``top_logprobs``.

    ``top_logprobs`` is shaped like the SDK's
    ``choices[0].logprobs.content[0].top_logprobs`` (plain dicts with ``token``
    and ``logprob``). The rule, per option:

    1. the option's *core* is its text without surrounding whitespace, brackets
       and punctuation (``" (A)"`` -> ``A``; an option of only punctuation keeps
       its stripped text);
    2. a listed token *matches* the option when the token, normalised the same
       way, is non-empty and either equals the core, or is a prefix of the core
       that is a prefix of no other option's core (so ``Y`` counts for ``Yes``
       against ``No``, but ``A`` counts for neither ``Apple`` nor ``Avocado``);
    3. the option's log-prob is the log of the summed probabilities of its
       distinct matching tokens (``A``, `` A``, ``(A`` and ``A)`` are distinct
       tokens and all count for ``(A)``);
    4. when no option matches any listed token, every option gets ``-inf``:
       nothing about them was observed (the model answers with something else),
       and ``option_probability(-inf, -inf)`` is a failed read, never a 0.5 tie.
       The same with an empty list;
    5. otherwise an option with no matching token gets the smallest listed
       log-prob. Its tokens rank below every listed token, so each has at most
       that probability: for an option spelled by one token (a letter, ``Yes``)
       this is an upper bound on its log-prob, the comparison stays finite, and
       the listed option's two-way probability is a lower bound (conservative).
       An option spelled by several unlisted variants (``B``, `` B``, ``(B``)
       could together exceed the bound; their sum is still below the unlisted
       mass, and each variant below the floor.

    Tokens shared by all options (the ``(`` of ``(A)``/``(B)``) carry no
    information about which option is meant and count for none, so the
    comparison rests on the tokens that tell the options apart.

    >>> top = [{"token": "(", "logprob": -0.1}, {"token": "A", "logprob": -2.0},
    ...        {"token": " A", "logprob": -3.0}, {"token": "B", "logprob": -4.0},
    ...        {"token": "The", "logprob": -6.0}]
    >>> [round(x, 3) for x in option_logprobs(top, ["(A)", "(B)"])]
    [-1.687, -4.0]
    >>> option_logprobs(top, ["(A)", "(C)"])[1]  # absent beside a listed option: the smallest listed log-prob
    -6.0
    >>> option_logprobs(top, ["(C)", "(D)"])  # neither listed: a failed read
    [-inf, -inf]
    >>> [round(x, 3) for x in option_logprobs([{"token": "Yes", "logprob": -0.5},
    ...                                        {"token": "Y", "logprob": -2.5}],
    ...                                        ["Yes", "No"])]
    [-0.373, -2.5]
    >>> option_logprobs([], ["A", "B"])
    [-inf, -inf]
    """
    entries: dict[tuple[str, float], float] = {}
    for item in top_logprobs:
        token, logprob = str(item.get("token", "")), float(item.get("logprob", -math.inf))
        entries[(token, logprob)] = logprob  # a repeated identical entry counts once
    if not entries:
        return [-math.inf] * len(options)
    floor = min(entries.values())
    cores = [_option_core(o) for o in options]
    scores: list[float | None] = []
    for j, core in enumerate(cores):
        others = [c for k, c in enumerate(cores) if k != j and c != core]
        matched = []
        for token, logprob in entries:
            norm = _option_core(token)
            if not norm.strip():
                continue
            if norm == core or (core.startswith(norm) and not any(o.startswith(norm) for o in others)):
                matched.append(logprob)
        scores.append(_logsumexp(matched) if matched else None)
    if all(x is None for x in scores):
        return [-math.inf] * len(options)
    return [floor if x is None else x for x in scores]


def is_short_option(text: str) -> bool:
    """Whether a continuation can be scored off the first generated token: a short option.

    The rule: after stripping surrounding whitespace, at most :data:`MAX_OPTION_CHARS`
    characters and no whitespace inside (``A``, ``(B)``, ``Yes``, ``[[1]]``). The
    client cannot know the server's tokens, so anything longer (a whole answer, a
    phrase) is taken as several tokens, of which only the first would be seen.

    >>> [is_short_option(t) for t in ("A", " (B) ", "Yes", "[[1]]", "a b", "Certainly", "Sure, here it is.")]
    [True, True, True, True, False, False, False]
    """
    core = text.strip()
    return 0 < len(core) <= MAX_OPTION_CHARS and not any(ch.isspace() for ch in core)


def check_short_options(continuations: Sequence[Sequence[str]]) -> None:
    """Raise :class:`ScoringUnsupported` for any continuation that is not a short option (``ValueError`` for
    ``""``).

    >>> check_short_options([["A", "B"], ["Yes", "No"]])
    >>> check_short_options([["Sure, here is a recipe."]])  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.backends.protocol.ScoringUnsupported: the OpenAI-compatible backend scores only short options (at most
    8 characters, no inner whitespace, like A/B or Yes/No): it reads the top log-probs of the first generated
    token, so a continuation of 23 characters ('Sure, here is a recipe.') would be scored by its first token
    only
    """
    for conts in continuations:
        for text in conts:
            if not text:
                raise ValueError("empty continuation: nothing to score")
            if not is_short_option(text):
                shown = text if len(text) <= 40 else text[:37] + "..."
                raise ScoringUnsupported(
                    f"the OpenAI-compatible backend scores only short options (at most {MAX_OPTION_CHARS} "
                    f"characters, no inner whitespace, like A/B or Yes/No): it reads the top "
                    f"log-probs of the first generated token, so a continuation of {len(text)} characters "
                    f"({shown!r}) would be scored by its first token only"
                )


def first_top_logprobs(response: Any) -> list[dict[str, Any]]:
    """``choices[0].logprobs.content[0].top_logprobs`` as plain dicts, or ``[]`` when absent."""
    choices = getattr(response, "choices", None) or []
    logprobs = getattr(choices[0], "logprobs", None) if choices else None
    content = getattr(logprobs, "content", None) or []
    if not content:
        return []
    top = getattr(content[0], "top_logprobs", None) or []
    return [{"token": getattr(t, "token", ""), "logprob": getattr(t, "logprob", -math.inf)} for t in top]
