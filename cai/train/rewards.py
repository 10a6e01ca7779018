"""Reward functions for on-policy training (PPO here; RLOO and GRPO through TRL).

A reward is any callable ``reward(prompts, completions) -> list[float]``:
``prompts[i]`` is a chat (a list of ``{"role", "content"}`` dicts, ending with
the user turn the answer replies to) and ``completions[i]`` the answer's text;
one float per answer comes back, higher is better. Three kinds ship here:

* :class:`PreferenceModelReward`: a preference model written by ``cai train rm``
  (``AutoModelForSequenceClassification`` with one output) scores the chat plus
  the answer rendered with the model's own chat template, batched, fp32 on CPU;
* :class:`JudgeReward`: direct RLAIF. A feedback model behind the
  :class:`~cai.backends.Backend` protocol is asked a single-answer rubric
  question and the reward is ``p(Yes)`` (or the log-odds) read from
  ``Backend.score`` over the options ``Yes``/``No``
  (both live in :mod:`cai.scoring.reward_scorers` and are re-exported here);
* toy rewards for tests: :class:`TokenFractionReward` (the fraction of the
  answer's tokens that are a target token) and :class:`ContainsReward`.

:func:`as_trl_reward` adapts any of them to TRL's reward-function signature
``(prompts, completions, **kwargs) -> list[float]`` (conversational or plain
text), and :func:`make_reward` builds one from a command-line spec string
(``toy:token=fox``, ``rm:PATH``, ``judge:MODEL``; see its doc).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.scoring.reward_scorers import (
    DEFAULT_JUDGE_QUESTION,
    JUDGE_TEMPLATE,
    JudgeReward,
    PreferenceModelReward,
    as_chat,
    check_lengths,
    load_preference_model,
    read_model_meta,
    transcript,
    yes_probability,
)

__all__ = [
    "DEFAULT_JUDGE_QUESTION", "JUDGE_TEMPLATE", "REWARD_SPECS", "ContainsReward", "JudgeReward",
    "PreferenceModelReward", "RewardFn", "TokenFractionReward", "as_chat", "as_trl_reward", "card_summary",
    "completion_text", "load_preference_model", "make_reward", "parse_reward_spec", "read_model_meta",
    "reward_description", "token_fraction", "transcript", "yes_probability",
]

Chat = list[dict[str, str]]
RewardFn = Callable[[Sequence[Chat], Sequence[str]], list[float]]


# ----------------------------------------------------------------------- helpers
def completion_text(completion: str | Sequence[dict[str, str]]) -> str:
    """An answer's text: the string itself, or the last assistant message's content (TRL's conversational
    form).

    >>> completion_text("plain")
    'plain'
    >>> completion_text([{"role": "assistant", "content": "Sure."}])
    'Sure.'
    """
    if isinstance(completion, str):
        return completion
    for m in reversed(list(completion)):
        if m.get("role") == "assistant":
            return m["content"]
    raise ValueError("a conversational completion needs an assistant message")


# --------------------------------------------------------------------- TRL adapter
def as_trl_reward(fn: RewardFn, name: str | None = None) -> Callable[..., list[float]]:
    """Wrap a ``(chats, texts)`` reward as a TRL reward function ``(prompts, completions, **kwargs)``.

    TRL passes prompts and completions either as strings or as message lists
    (conversational datasets); both are normalised. The wrapper's ``__name__``
    (TRL logs rewards under it) is ``name`` or the reward's class/function name.

    >>> def shout(prompts, completions):
    ...     return [float(c.isupper()) for c in completions]
    >>> trl_fn = as_trl_reward(shout)
    >>> trl_fn(prompts=["q", "q"], completions=[[{"role": "assistant", "content": "YES"}], "no"], extra=1)
    [1.0, 0.0]
    >>> trl_fn.__name__
    'shout'
    """

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        check_lengths(prompts, completions)
        return [float(r)
                for r in fn([as_chat(p) for p in prompts], [completion_text(c) for c in completions])]

    reward.__name__ = name or getattr(fn, "__name__", None) or type(fn).__name__
    reward.__qualname__ = reward.__name__
    reward.__doc__ = getattr(fn, "__doc__", None)
    return reward


# ----------------------------------------------------------------------- toy rewards
class TokenFractionReward:
    """Toy reward: the fraction of the answer's tokens (policy tokenizer) that are ``token``; 0 for an empty
    answer.

    ``token`` must encode to exactly one token id, as given or else with a
    leading space (BPE tokenizers keep words as `` word``). Easy for a policy to
    learn, so tests can check that training raises it.
    """

    def __init__(self, tokenizer: Any, token: str):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 and not token.startswith(" "):
            spaced = tokenizer(" " + token, add_special_tokens=False)["input_ids"]
            ids = spaced if len(spaced) == 1 else ids
        if len(ids) != 1:
            raise CaiError(
                f"toy reward token {token!r} encodes to {len(ids)} tokens, not one (also with a "
                f"leading space)",
                hint="pick a string the policy's tokenizer keeps as a single token",
            )
        self.tokenizer = tokenizer
        self.token = token
        self.token_id = int(ids[0])
        self.__name__ = "token_fraction"

    def __repr__(self) -> str:
        return f"TokenFractionReward(token={self.token!r}, id={self.token_id})"

    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> list[float]:
        check_lengths(prompts, completions)
        out = []
        for text in completions:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            out.append(token_fraction(ids, self.token_id))
        return out


def token_fraction(ids: Sequence[int], token_id: int) -> float:
    """The fraction of ``ids`` equal to ``token_id`` (0 when empty).

    >>> token_fraction([5, 7, 5, 1], 5)
    0.5
    >>> token_fraction([], 5)
    0.0
    """
    return sum(1 for i in ids if i == token_id) / len(ids) if ids else 0.0


class ContainsReward:
    """Toy reward: 1.0 when the answer contains ``text`` (case-insensitive), else 0.0.

    >>> ContainsReward("sorry")([[{"role": "user", "content": "q"}]] * 2, ["I'm SORRY", "ok"])
    [1.0, 0.0]
    """

    def __init__(self, text: str):
        if not text:
            raise CaiError("toy reward 'contains' needs some text", hint="e.g. toy:contains=sorry")
        self.text = text.lower()
        self.__name__ = "contains"

    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> list[float]:
        check_lengths(prompts, completions)
        return [float(self.text in c.lower()) for c in completions]


# ------------------------------------------------------------------------ from a spec
REWARD_SPECS = (
    "toy:token=TOKEN (fraction of the answer's tokens that are TOKEN), "
    "toy:contains=TEXT (1 if the answer contains TEXT), "
    "rm:PATH or a bare directory (a preference model from `cai train rm`), "
    "judge:MODEL (p(Yes) from a feedback model on a rubric question)"
)


def _is_dir(text: str) -> bool:
    """Whether ``text`` names an existing directory; False for anything that cannot be a path.

    >>> _is_dir("~no-such-user-xyz"), _is_dir("a\\x00b")
    (False, False)
    """
    try:
        return Path(os.path.expanduser(text)).is_dir()  # os.path: "~unknownuser" stays as is
    except (OSError, ValueError):
        return False


def parse_reward_spec(spec: str) -> tuple[str, str, str]:
    """Split a reward spec into ``(kind, key, value)``.

    >>> parse_reward_spec("toy:token=fox")
    ('toy', 'token', 'fox')
    >>> parse_reward_spec("rm:runs/rm")
    ('rm', 'path', 'runs/rm')
    >>> parse_reward_spec("judge:default")
    ('judge', 'model', 'default')
    >>> parse_reward_spec("runs/rm")
    ('rm', 'path', 'runs/rm')
    >>> parse_reward_spec("toy:size=3")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: reward spec 'toy:size=3': unknown toy reward 'size' (fix: use toy:token=TOKEN or
    toy:contains=TEXT)
    """
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("toy", "rm", "judge"):
        if spec and (_is_dir(spec) or "/" in spec or spec.startswith(".")):
            return "rm", "path", spec
        raise CaiError(f"reward spec {spec!r} not understood", hint=f"use one of: {REWARD_SPECS}")
    if kind == "toy":
        key, eq, value = rest.partition("=")
        if not eq or key not in ("token", "contains"):
            raise CaiError(
                f"reward spec {spec!r}: unknown toy reward {key!r}",
                hint="use toy:token=TOKEN or toy:contains=TEXT"
            )
        return "toy", key, value
    if not rest:
        raise CaiError(f"reward spec {spec!r} names no {'path' if kind == 'rm' else 'model'}",
                       hint=f"e.g. {kind}:...")
    return kind, "path" if kind == "rm" else "model", rest


def make_reward(
    spec: str,
    *,
    tokenizer: Any = None,
    device: str | None = None,
    batch_size: int = 8,
    judge_question: str = DEFAULT_JUDGE_QUESTION,
    judge_output: str = "prob",
    judge_backend: Any = None,
) -> RewardFn:
    """Build a reward from a spec string (see :data:`REWARD_SPECS`).

    ``tokenizer`` is the policy's (needed by ``toy:token``); ``judge_backend``
    is a ready backend for ``judge:`` (else an ``hf`` backend on MODEL is built).

    >>> make_reward("toy:contains=sorry")([[{"role": "user", "content": "q"}]], ["Sorry!"])
    [1.0]
    """
    kind, key, value = parse_reward_spec(spec)
    if kind == "toy" and key == "token":
        if tokenizer is None:
            raise ValueError("toy:token needs the policy's tokenizer")
        return TokenFractionReward(tokenizer, value)
    if kind == "toy":
        return ContainsReward(value)
    if kind == "rm":
        return PreferenceModelReward(value, device=device, batch_size=batch_size)
    if judge_backend is None:
        from cai.backends.spec import BackendSpec

        judge_backend = BackendSpec(name=value, batch_size=batch_size, device=device).build()
    return JudgeReward(judge_backend, question=judge_question, output=judge_output)


def card_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The facts of a trained model's ``cai_card.json`` worth repeating downstream.

    Its base model, trainer, data files, constitutions (name, version, hash) and
    labeler audit summary, when present.

    >>> card_summary({"trainer": "rm", "base_model": "default", "config": {"lr": 1},
    ...     "data": [{"path": "p.jsonl", "role": "train", "constitutions": [{"name": "c", "version": "1",
    ...     "hash": "ab", "records": 3}]}], "audit": None})  # doctest: +NORMALIZE_WHITESPACE
    {'trainer': 'rm', 'base_model': 'default', 'data': ['p.jsonl'], 'constitutions': [{'name': 'c', 'version':
    '1', 'hash': 'ab'}]}
    """
    out: dict[str, Any] = {k: meta[k] for k in ("trainer", "base_model") if meta.get(k) is not None}
    data = [d for d in meta.get("data") or [] if isinstance(d, dict)]
    if data:
        out["data"] = [d.get("path") for d in data]
    consts = {(c.get("name"), c.get("version"), c.get("hash")) for d in data
              for c in d.get("constitutions") or []}
    if consts:
        out["constitutions"] = [{"name": n, "version": v, "hash": h} for n, v, h in sorted(consts, key=str)]
    audit = meta.get("audit")
    if isinstance(audit, dict) and audit:
        out["audit"] = audit
    return out


def reward_description(fn: RewardFn) -> dict[str, Any]:
    """What a reward is, for logs and model cards.

    >>> reward_description(ContainsReward("sorry"))
    {'kind': 'contains', 'repr': 'ContainsReward'}
    """
    desc: dict[str, Any] = {"kind": getattr(fn, "__name__", type(fn).__name__)}
    if isinstance(fn, PreferenceModelReward):
        desc.update(path=fn.path, card=card_summary(fn.meta))
    elif isinstance(fn, JudgeReward):
        desc.update(model=getattr(fn.backend, "model", None), question=fn.question, output=fn.output)
    desc["repr"] = repr(fn) if type(fn).__repr__ is not object.__repr__ else type(fn).__name__
    return desc
