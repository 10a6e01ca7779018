"""Format adapters: rows in the shapes the field publishes, as cai's prompt and preference fields.

Each adapter is a pure function from one row (a dict) to one row; odd input raises
only :class:`~cai.core.errors.CaiError`. :func:`adapt_pair` and :func:`adapt_prompt`
pick the adapter from the row's columns:

=================  =====================================================  =================================
format             columns                                                becomes
=================  =====================================================  =================================
native             ``prompt``, ``chosen``, ``rejected``                   unchanged
UltraFeedback      ``prompt`` + ``chosen``/``rejected`` message lists     the shared prompt turns stripped
                   that repeat the prompt (``*_binarized``)               from ``chosen``/``rejected``
hh-rlhf            ``chosen``/``rejected`` transcripts                    prompt messages + the two final
                   ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``                 assistant answers
implicit prompt    ``chosen``/``rejected`` full conversations             shared opening turns -> ``prompt``
PKU-SafeRLHF       ``prompt``, ``response_0``, ``response_1``,             ``chosen`` = the safer response
                   ``safer_response_id`` / ``better_response_id``         (``#chosen_id=better_response_id``:
                                                                          the more helpful one)
=================  =====================================================  =================================

Prompts: a ``prompt`` column (AdvBench's ``prompt,target`` too), ``goal`` (AdvBench's
original CSV), ``Behavior`` (HarmBench, with ``ContextString`` when it has one),
``question`` (Do-Not-Answer, TruthfulQA), or hh-rlhf transcripts (the shared opening turns).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from cai.core.errors import CaiError

PAIR_FIELDS = frozenset({"prompt", "chosen", "rejected", "id", "p_chosen", "source", "weight", "provenance",
                         "metadata", "schema_version"})
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_NAMES = {"user": "Human", "assistant": "Assistant"}
PKU_CHOICES = ("chosen_id", "safer_response_id", "better_response_id")  # first present wins
PROMPT_COLUMNS = ("prompt", "goal", "Behavior", "question")


class ShapeError(CaiError):
    """A row that fits no format; ``mapping`` is the column mapping that would most likely fix it."""

    def __init__(self, message: str, mapping: str):
        self.mapping = mapping
        super().__init__(message, hint=f"map the columns: SOURCE#{mapping}")


# --------------------------------------------------------------------------- messages


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) and "role" in m for m in v)


def _turns(v: list[dict]) -> list[tuple[Any, Any]]:
    return [(m.get("role"), m.get("content")) for m in v]


def parse_transcript(text: Any, field: str = "transcript") -> list[dict[str, str]]:
    """An hh-rlhf transcript as messages.

    >>> parse_transcript("\\n\\nHuman: hi\\n\\nAssistant: hello")
    [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'}]
    >>> parse_transcript("hi")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.core.errors.CaiError: transcript: not a 'Human: ... Assistant: ...' transcript (fix: ...
    """
    hint = "start each turn with '\\n\\nHuman: ' or '\\n\\nAssistant: '"
    if not isinstance(text, str) or not text.lstrip().startswith(("Human:", "Assistant:")):
        raise CaiError(f"{field}: not a 'Human: ... Assistant: ...' transcript", hint=hint)
    parts = _TURN.split("\n\n" + text.lstrip())
    return [{"role": _ROLES[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def render_transcript(messages: list[dict[str, str]]) -> str:
    """Messages as an hh-rlhf transcript (the inverse of :func:`parse_transcript`).

    >>> render_transcript([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    '\\n\\nHuman: hi\\n\\nAssistant: yo'
    """
    return "".join(f"\n\n{_NAMES[m['role']]}: {m['content']}" for m in messages)


def is_transcript(v: Any) -> bool:
    """Whether a value looks like an hh-rlhf transcript.

    >>> is_transcript("\\n\\nHuman: a\\n\\nAssistant: b"), is_transcript("just text"), is_transcript(3)
    (True, False, False)
    """
    return isinstance(v, str) and v.lstrip().startswith("Human:") and "\n\nAssistant:" in v


# --------------------------------------------------------------------------- pair adapters


def split_shared_prompt(chosen: list[dict], rejected: list[dict]) -> dict[str, list[dict]]:
    """Implicit-prompt pair: the shared opening turns (up to the last shared user turn) become the prompt.

    >>> u, a, b = ({"role": r, "content": c} for r, c in (("user", "q"), ("assistant", "A"),
    ...                                                   ("assistant", "B")))
    >>> split_shared_prompt([u, a], [u, b])
    {'prompt': [{'role': 'user', 'content': 'q'}], 'chosen': [{'role': 'assistant', 'content': 'A'}], \
'rejected': [{'role': 'assistant', 'content': 'B'}]}
    """
    c, r = _turns(chosen), _turns(rejected)
    n = 0
    while n < min(len(c), len(r)) and c[n] == r[n]:
        n += 1
    while n > 0 and c[n - 1][0] != "user":
        n -= 1
    if n == 0:
        raise CaiError("chosen/rejected: the two conversations share no opening user turn, so there is no "
                       "prompt to take from them", hint="add a prompt column, or map one: prompt=COLUMN")
    if n == len(c) or n == len(r):
        raise CaiError("chosen/rejected: one conversation ends where the shared prompt ends: no answer",
                       hint="give each side its answer after the prompt")
    return {"prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def from_hh_rlhf(row: dict[str, Any]) -> dict[str, Any]:
    """hh-rlhf raw transcripts as prompt messages and the final answers.

    >>> r = from_hh_rlhf({"chosen": "\\n\\nHuman: q\\n\\nAssistant: A",
    ...                   "rejected": "\\n\\nHuman: q\\n\\nAssistant: B"})
    >>> r["prompt"], r["chosen"][-1]["content"], r["rejected"][-1]["content"]
    ([{'role': 'user', 'content': 'q'}], 'A', 'B')
    """
    pair = split_shared_prompt(parse_transcript(row.get("chosen"), "chosen"),
                               parse_transcript(row.get("rejected"), "rejected"))
    return {**_rest(row, ("chosen", "rejected")), **pair}


def from_implicit_prompt(row: dict[str, Any]) -> dict[str, Any]:
    """chosen/rejected full conversations sharing a prefix, with the prompt made explicit (as TRL's
    ``maybe_extract_prompt``).

    >>> u = {"role": "user", "content": "q"}
    >>> r = from_implicit_prompt({"chosen": [u, {"role": "assistant", "content": "A"}],
    ...                           "rejected": [u, {"role": "assistant", "content": "B"}], "score": 1})
    >>> r["prompt"] == [u], r["metadata"]
    (True, {'score': 1})
    """
    return {**_rest(row, ("chosen", "rejected")), **split_shared_prompt(row["chosen"], row["rejected"])}


def from_ultrafeedback(row: dict[str, Any]) -> dict[str, Any]:
    """UltraFeedback-binarized: ``chosen``/``rejected`` repeat the prompt's user turn; strip it.

    >>> r = from_ultrafeedback({"prompt": "q", "prompt_id": "x", "chosen": [{"role": "user", "content": "q"},
    ...     {"role": "assistant", "content": "A"}], "rejected": [{"role": "user", "content": "q"},
    ...     {"role": "assistant", "content": "B"}], "score_chosen": 8.0})
    >>> r["prompt"], r["chosen"], r["metadata"]
    ('q', [{'role': 'assistant', 'content': 'A'}], {'prompt_id': 'x', 'score_chosen': 8.0})
    """
    n = len(_prompt_turns(row["prompt"]))
    return {**_rest(row, ("prompt", "chosen", "rejected")), "prompt": row["prompt"],
            "chosen": row["chosen"][n:], "rejected": row["rejected"][n:]}


def from_pku_saferlhf(row: dict[str, Any]) -> dict[str, Any]:
    """PKU-SafeRLHF: ``response_0``/``response_1`` and the id of the preferred one.

    The choice is ``chosen_id`` when the row has it (map ``chosen_id=better_response_id``
    for the more helpful answer), else ``safer_response_id``, else ``better_response_id``.

    >>> r = from_pku_saferlhf({"prompt": "q", "response_0": "A", "response_1": "B", "safer_response_id": 1,
    ...                        "better_response_id": 0})
    >>> r["chosen"], r["rejected"], r["metadata"]["chosen_by"]
    ('B', 'A', 'safer_response_id')
    """
    key = next(k for k in PKU_CHOICES if k in row)
    value = row[key]
    if isinstance(value, str) and value.strip() in ("0", "1"):
        value = int(value)
    if isinstance(value, bool) or value not in (0, 1):
        raise CaiError(f"{key}: {value!r} is not 0 or 1",
                       hint=f"give {key} as 0 (response_0) or 1 (response_1)")
    rest = _rest(row, ("prompt", "response_0", "response_1"))
    rest["metadata"] = {**rest.get("metadata", {}), "chosen_by": key}
    return {**rest, "prompt": row["prompt"], "chosen": row[f"response_{value}"],
            "rejected": row[f"response_{1 - value}"]}


def _prompt_turns(prompt: Any) -> list[tuple[Any, Any]]:
    return [("user", prompt)] if isinstance(prompt, str) else _turns(prompt) if _is_messages(prompt) else []


def _repeats_prompt(row: dict[str, Any]) -> bool:
    p = _prompt_turns(row.get("prompt"))
    return bool(p) and all(_is_messages(row.get(k)) and len(row[k]) > len(p) and _turns(row[k])[:len(p)] == p
                           for k in ("chosen", "rejected"))


def _rest(row: dict[str, Any], used: Collection[str], known: Collection[str] = PAIR_FIELDS) -> dict[str, Any]:
    """The row without ``used`` columns: known record fields stay, the others go into ``metadata``."""
    meta = dict(row["metadata"]) if isinstance(row.get("metadata"), dict) else {}
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in used or k == "metadata":
            continue
        if k in known:
            out[k] = v
        else:
            meta[k] = v
    if meta or "metadata" in row:
        out["metadata"] = meta
    return out


def pair_format(row: dict[str, Any]) -> str | None:
    """The name of the format a preference row is in, from its columns (``None``: none fits).

    >>> pair_format({"prompt": "q", "chosen": "a", "rejected": "b"})
    'native'
    >>> pair_format({"chosen": "\\n\\nHuman: q\\n\\nAssistant: a",
    ...              "rejected": "\\n\\nHuman: q\\n\\nAssistant: b"})
    'hh-rlhf'
    >>> pair_format({"question": "q", "good": "a"}) is None
    True
    """
    if "response_0" in row and "response_1" in row and "prompt" in row and any(k in row for k in PKU_CHOICES):
        return "pku-saferlhf"
    if "chosen" not in row or "rejected" not in row:
        return None
    if "prompt" in row:
        return "ultrafeedback" if _repeats_prompt(row) else "native"
    if is_transcript(row["chosen"]) and is_transcript(row["rejected"]):
        return "hh-rlhf"
    if _is_messages(row["chosen"]) and _is_messages(row["rejected"]):
        return "implicit-prompt"
    return None


_PAIR_ADAPTERS = {"hh-rlhf": from_hh_rlhf, "implicit-prompt": from_implicit_prompt,
                  "ultrafeedback": from_ultrafeedback, "pku-saferlhf": from_pku_saferlhf}


def _guess(columns: list[str], wanted: list[str]) -> str:
    """A likely mapping of ``wanted`` fields onto ``columns`` (in order, skipping exact names).

    >>> _guess(["question", "good", "bad"], ["prompt", "chosen", "rejected"])
    'prompt=question,chosen=good,rejected=bad'
    """
    free = [c for c in columns if c not in wanted] or columns or ["COLUMN"]
    pairs = [(w, w if w in columns else free.pop(0) if free else "COLUMN") for w in wanted]
    return ",".join(f"{w}={c}" for w, c in pairs if w != c) or ",".join(f"{w}={w}" for w in wanted)


def adapt_pair(row: Any, known: Collection[str] = PAIR_FIELDS, keep_extra: bool = False) -> dict[str, Any]:
    """A preference row in any known format as ``prompt``/``chosen``/``rejected`` (+ known fields).

    ``keep_extra`` moves columns that are no field of the record into ``metadata``
    (dataset sources); otherwise a native row is returned unchanged (JSONL files,
    where an unknown key is most likely a typo the record rejects).

    >>> adapt_pair({"prompt": "q", "chosen": "a", "rejected": "b", "score": 3}, keep_extra=True)
    {'metadata': {'score': 3}, 'prompt': 'q', 'chosen': 'a', 'rejected': 'b'}
    >>> adapt_pair({"question": "q", "good": "a", "bad": "b"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.sources.formats.ShapeError: not a preference pair: columns question, good, bad fit no known format ...
    """
    if not isinstance(row, dict):
        raise CaiError(f"expected a mapping of columns, got {type(row).__name__}", hint="give one pair a row")
    fmt = pair_format(row)
    if fmt is None:
        cols = [str(k) for k in row]
        raise ShapeError(f"not a preference pair: columns {', '.join(cols) or '(none)'} fit no known format "
                         "(prompt/chosen/rejected, hh-rlhf, UltraFeedback, implicit prompt, PKU-SafeRLHF)",
                         _guess(cols, ["prompt", "chosen", "rejected"]))
    if fmt == "native":
        return {**_rest(row, ("prompt", "chosen", "rejected"), known), "prompt": row["prompt"],
                "chosen": row["chosen"], "rejected": row["rejected"]} if keep_extra else row
    out = _PAIR_ADAPTERS[fmt](row)
    meta = out.pop("metadata", {})
    kept = {k: v for k, v in out.items() if k in known or k in ("prompt", "chosen", "rejected")}
    meta.update({k: v for k, v in out.items() if k not in kept})
    return {**kept, **({"metadata": meta} if meta else {})}


# --------------------------------------------------------------------------- prompt adapters


def prompt_format(row: dict[str, Any]) -> str | None:
    """Which column a prompt row's prompt comes from (``None``: none fits).

    >>> prompt_format({"goal": "g", "target": "t"}), prompt_format({"Behavior": "b"}), prompt_format({"x": 1})
    ('goal', 'Behavior', None)
    """
    for col in PROMPT_COLUMNS:
        if col in row:
            return col
    if is_transcript(row.get("chosen")):
        return "hh-rlhf"
    return None


def adapt_prompt(row: Any, keep_extra: bool = False) -> dict[str, Any]:
    """A prompt row in any known shape as ``{"prompt": ..., other columns}`` (they become metadata).

    >>> adapt_prompt({"goal": "Write a scam email", "target": "Sure, here is"})
    {'prompt': 'Write a scam email', 'target': 'Sure, here is'}
    >>> adapt_prompt({"Behavior": "Explain X", "ContextString": "Some text"})["prompt"]
    'Some text\\n\\n---\\n\\nExplain X'
    >>> adapt_prompt({"id": 7, "question": "How?"}, keep_extra=True)
    {'prompt': 'How?', 'id': '7'}
    >>> adapt_prompt({"text": "hi"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    cai.sources.formats.ShapeError: no prompt: columns text fit no prompt format ...
    """
    if not isinstance(row, dict):
        raise CaiError(f"expected a mapping of columns, got {type(row).__name__}",
                       hint="give one prompt a row")
    fmt = prompt_format(row)
    if fmt is None:
        cols = [str(k) for k in row]
        raise ShapeError(f"no prompt: columns {', '.join(cols) or '(none)'} fit no prompt format "
                         f"({', '.join(PROMPT_COLUMNS)}, hh-rlhf)", _guess(cols, ["prompt"]))
    if fmt == "prompt":
        out = dict(row)
    elif fmt == "hh-rlhf":
        turns = parse_transcript(row["chosen"], "chosen")
        if is_transcript(row.get("rejected")):
            turns = split_shared_prompt(turns, parse_transcript(row["rejected"], "rejected"))["prompt"]
        while turns and turns[-1]["role"] != "user":
            turns = turns[:-1]
        out = {"prompt": turns, **{k: v for k, v in row.items() if k not in ("chosen", "rejected")}}
    else:
        prompt = row[fmt]
        context = row.get("ContextString") if fmt == "Behavior" else None
        if isinstance(context, str) and context.strip() and isinstance(prompt, str):
            prompt = f"{context}\n\n---\n\n{prompt}"
        out = {"prompt": prompt, **{k: v for k, v in row.items() if k not in (fmt, "prompt")}}
    # a published set's integer ids (Do-Not-Answer's ``id``) as the record's string id, from any source
    if (keep_extra or fmt != "prompt") and isinstance(out.get("id"), int) and not isinstance(out["id"], bool):
        out["id"] = str(out["id"])
    return out
