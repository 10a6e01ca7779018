"""Cleaning rules for revisions: which ones are fit to train on, and a safe light normalisation.

Each rule is a small pure function. :func:`clean_revision` applies them in a fixed
order and returns the cleaned text with the reasons it is unfit for SFT (an empty
list when it is clean). A flagged revision stays in the trace (``revisions.jsonl``)
and is only left out of ``sft.jsonl``.

Rules (flag names as stored):

* ``empty``: nothing but whitespace (after preamble stripping);
* ``truncated``: generation stopped at ``max_new_tokens`` (finish reason ``length``);
* ``unchanged``: equal to the answer it revises after whitespace normalisation;
* ``leak-request``: repeats the critique or revision request it was given (the
  whole request, or one of its sentences of six words or more);
* ``leak-label``: scaffolding labels, ``CritiqueRequest``/``RevisionRequest``
  anywhere, or ``Critique:``/``Revision:`` at the start of a line;
* ``leak-role``: a role label (``User:``, ``Assistant:``, ``Human:``, ``System:``)
  at the start of a line, a sign the model wrote the next turn itself;
* ``leak-template``: chat-template tokens such as ``<|im_start|>`` or ``[INST]``.

The only normalisation is :func:`strip_preamble`: one leading label line such as
``Revision:`` or ``Here is the revised response:`` is removed when text follows it.
The raw text is always kept beside the cleaned one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FLAGS = ("empty", "truncated", "unchanged", "leak-request", "leak-label", "leak-role", "leak-template")
"""Every flag, in the order :func:`clean_revision` reports them."""

ANSWER_FLAGS = ("empty", "truncated", "leak-role", "leak-template")
"""The rules that apply to a plain answer (:func:`answer_flags`)."""

_PREAMBLE = re.compile(
    r"""\A\s*[*_#\s]*(?:
        (?:final\s+)?revision
      | revised\s+(?:response|answer|version)
      | rewritten\s+(?:response|answer|version)
      | here(?:\s+is|'s|\s+are)\s+(?:the\s+|a\s+|my\s+|an?\s+)?
        (?:revised|rewritten|updated|improved|new|safer)\s+
        (?:version\s+of\s+(?:the\s+|my\s+)?(?:response|answer)|response|answer|version)
        (?:\s+of\s+(?:the\s+|my\s+)?(?:response|answer))?
    )[*_\s]*:[*_]*[ \t]*(?:\r?\n)*""",
    re.IGNORECASE | re.VERBOSE,
)
_LABEL_ANYWHERE = re.compile(r"(?:critique|revision)[\s_-]?request", re.IGNORECASE)
_LABEL_LINE = re.compile(r"^[ \t>*_#-]*(?:critique|revision)[*_ \t]*:", re.IGNORECASE | re.MULTILINE)
_ROLE_LINE = re.compile(r"^[ \t>*_#-]*(?:user|assistant|human|system)[*_ \t]*:", re.IGNORECASE | re.MULTILINE)
_TEMPLATE = re.compile(
    r"<\|[A-Za-z0-9_]+\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<\|(?:start|end)_header_id\|>"
)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
MIN_LEAK_WORDS = 6


def normalise_ws(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends.

    >>> normalise_ws("  Hello,\\n\\n  world\\t! ")
    'Hello, world !'
    """
    return " ".join(text.split())


def strip_preamble(text: str) -> str:
    """Remove one leading "Revision:" / "Here is the revised response:" label, if text follows it.

    Only a label that ends with a colon at the very start is removed; anything
    else is returned unchanged (apart from surrounding whitespace).

    >>> strip_preamble("Revision: I can't help with that.")
    "I can't help with that."
    >>> strip_preamble("Here is the revised response:\\n\\nTry a library instead.")
    'Try a library instead.'
    >>> strip_preamble("**Revised response:** Ask your neighbour first.")
    'Ask your neighbour first.'
    >>> strip_preamble("Revisions are useful: they fix things.")
    'Revisions are useful: they fix things.'
    >>> strip_preamble("Revision:")
    'Revision:'
    """
    stripped = text.strip()
    m = _PREAMBLE.match(stripped)
    if m is None:
        return stripped
    rest = stripped[m.end() :].strip()
    return rest if rest else stripped


def is_empty(text: str) -> bool:
    """Whether ``text`` has nothing but whitespace.

    >>> is_empty(" \\n\\t"), is_empty(" ok ")
    (True, False)
    """
    return not text.strip()


def is_truncated(finish_reason: str | None) -> bool:
    """Whether generation ran out of tokens.

    >>> is_truncated("length"), is_truncated("stop")
    (True, False)
    """
    return finish_reason == "length"


def is_unchanged(revision: str, previous: str) -> bool:
    """Whether a revision equals what it revises, up to whitespace.

    >>> is_unchanged("Use a  library.\\n", "Use a library."), is_unchanged("Use a library!", "Use a library.")
    (True, False)
    """
    return normalise_ws(revision) == normalise_ws(previous)


def request_fragments(request: str, min_words: int = MIN_LEAK_WORDS) -> list[str]:
    """The lower-cased, whitespace-normalised pieces of a request whose presence counts as a leak.

    The whole request, and each of its sentences of at least ``min_words`` words.

    >>> request_fragments("Rewrite the response. Remove every harmful part of the answer please.")
    ['rewrite the response. remove every harmful part of the answer please.', 'remove every harmful part of the answer please.']
    """
    whole = normalise_ws(request).lower()
    if not whole:
        return []
    sentences = [s for s in _SENTENCE_END.split(whole) if len(s.split()) >= min_words]
    return [whole, *(s for s in sentences if s != whole)]


def leaks_request(text: str, requests: Iterable[str | None]) -> bool:
    """Whether ``text`` repeats a request it was given (see :func:`request_fragments`).

    >>> req = "Point out anything harmful in the response and explain why it is harmful."
    >>> leaks_request("Sure. Point out anything harmful in the response and explain why it is harmful.", [req])
    True
    >>> leaks_request("I can't help with that, but a locksmith can.", [req, None])
    False
    """
    flat = normalise_ws(text).lower()
    return any(frag in flat for req in requests if req for frag in request_fragments(req))


def leaks_label(text: str) -> bool:
    """Whether scaffolding labels leaked: ``CritiqueRequest`` anywhere, ``Critique:``/``Revision:`` at a line start.

    >>> leaks_label("Fine.\\nCritique: the answer is rude."), leaks_label("See the RevisionRequest above")
    (True, True)
    >>> leaks_label("My revision of the plan: go on Monday.")
    False
    """
    return bool(_LABEL_ANYWHERE.search(text) or _LABEL_LINE.search(text))


def leaks_role(text: str) -> bool:
    """Whether a chat role label starts a line (``User:``, ``Assistant:``, ``Human:``, ``System:``).

    >>> leaks_role("Sure.\\nHuman: thanks!"), leaks_role("The user: interface is simple")
    (True, False)
    """
    return bool(_ROLE_LINE.search(text))


def leaks_template(text: str) -> bool:
    """Whether chat-template control tokens appear.

    >>> leaks_template("ok<|im_end|>"), leaks_template("[INST] hi"), leaks_template("a <b>bold</b> word")
    (True, True, False)
    """
    return bool(_TEMPLATE.search(text))


def answer_flags(text: str, finish_reason: str | None) -> list[str]:
    """Why a plain answer is unfit for SFT (rules that need no request or previous text).

    >>> answer_flags("Hello!", "stop"), answer_flags("", "length"), answer_flags("Hi\\nUser: more", "stop")
    ([], ['empty', 'truncated'], ['leak-role'])
    """
    flags = []
    if is_empty(text):
        flags.append("empty")
    if is_truncated(finish_reason):
        flags.append("truncated")
    if not is_empty(text):
        if leaks_role(text):
            flags.append("leak-role")
        if leaks_template(text):
            flags.append("leak-template")
    return flags


def clean_revision(
    raw: str, finish_reason: str | None, previous: str, requests: Iterable[str | None] = ()
) -> tuple[str, list[str]]:
    """``(cleaned_text, flags)`` for one revision: preamble stripped, every rule applied.

    ``previous`` is the text being revised; ``requests`` the critique and revision
    requests the model was given.

    >>> clean_revision("Revision: Ask them first.", "stop", "Just take it.", ["Rewrite the response."])
    ('Ask them first.', [])
    >>> clean_revision("Just take it.", "length", "Just  take it.")
    ('Just take it.', ['truncated', 'unchanged'])
    >>> clean_revision("  ", "stop", "x")
    ('', ['empty'])
    """
    text = strip_preamble(raw)
    if is_empty(text):
        return "", ["empty", *(["truncated"] if is_truncated(finish_reason) else [])]
    checks = {
        "truncated": is_truncated(finish_reason),
        "unchanged": is_unchanged(text, previous),
        "leak-request": leaks_request(text, list(requests)),
        "leak-label": leaks_label(text),
        "leak-role": leaks_role(text),
        "leak-template": leaks_template(text),
    }
    return text, [f for f in FLAGS if checks.get(f)]
