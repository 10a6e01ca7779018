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
  whole request, one of its sentences of six words or more, or any six
  consecutive words of it, punctuation aside);
* ``leak-label``: scaffolding labels, ``CritiqueRequest``/``RevisionRequest``
  anywhere, or ``Critique:``/``Revision:`` at the start of a line;
* ``leak-role``: a role label (``User:``, ``Assistant:``, ``Human:``, ``System:``)
  at the start of a line, a sign the model wrote the next turn itself;
* ``leak-template``: chat-template tokens such as ``<|im_start|>`` or ``[INST]``;
* ``repetition``: a repetition loop, :func:`is_repetitive`;
* ``copy-example``: copies the constitution's few-shot examples, :func:`copies_examples`;
* ``copy-critique``: mostly copies the round's critique, :func:`copies_critique`;
* ``about-response``: talks about "the response" instead of being one, :func:`talks_about_response`;
* ``off-topic``: shares no content word with the prompt or the answer, :func:`is_off_topic`;
* ``critique-copy-example``: the round's *critique* copies the few-shot examples
  (:func:`critique_flags`): a revision written after a degenerate critique is
  not trusted either.

The leak and copy rules compare word sequences: :func:`words` lower-cases and
keeps runs of letters and digits (apostrophes inside words kept), so punctuation
and spacing do not hide a copy. Thresholds were chosen on real text, not on single
rows: 3,524 human-written or real model answers from the shared data (hh-rlhf
chosen and rejected answers, five chat models' XSTest answers, Alpaca seed
references) stand in for fit answers and give the false-positive rate; 16 + 48
traces of the embedded 135M model under the ``harmless`` constitution give the
degenerate cases (see each rule's doc for its figures).

The only normalisation is :func:`strip_preamble`: one leading label line such as
``Revision:`` or ``Here is the revised response:`` is removed when text follows it.
The raw text is always kept beside the cleaned one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

FLAGS = (
    "empty", "truncated", "unchanged", "leak-request", "leak-label", "leak-role", "leak-template",
    "repetition", "copy-example", "copy-critique", "about-response", "off-topic", "critique-copy-example",
)
"""Every flag, in the order :func:`clean_revision` reports them."""

ANSWER_FLAGS = ("empty", "truncated", "leak-role", "leak-template", "repetition", "copy-example")
"""The rules that apply to a plain answer (:func:`answer_flags`; ``copy-example`` only after few-shot
examples)."""

CRITIQUE_FLAGS = ("critique-copy-example",)
"""The rules on a round's critique (:func:`critique_flags`); each also flags the round's revision."""

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
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_ABOUT_RESPONSE = re.compile(
    r"\b(?:the|this|that)\s+(?:(?:original|revised|initial|previous|above|assistant's|ai's)\s+)?(?:response|reply)\b",
    re.IGNORECASE,
)
MIN_LEAK_WORDS = 6
"""A request leaks when the text repeats ``MIN_LEAK_WORDS`` consecutive words of it (or the whole request)."""
COPY_WORDS = 6
"""A text copies a few-shot example when it shares a run of ``COPY_WORDS`` consecutive words with it."""
REPEAT_N, MAX_REPEAT_SHARE, MIN_REPEAT_WORDS = 4, 0.4, 12
"""Repetition: more than ``MAX_REPEAT_SHARE`` of the text's word ``REPEAT_N``-grams repeat an earlier one."""
CRITIQUE_N, MAX_CRITIQUE_SHARE = 4, 0.5
"""Copy of the critique: at least ``MAX_CRITIQUE_SHARE`` of the revision's word 4-grams come from the
critique."""
MIN_TOPIC_WORDS, STEM_CHARS = 5, 5
"""Off-topic: judged only on texts with ``MIN_TOPIC_WORDS`` content words; words compared on
``STEM_CHARS``."""

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself
him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same shan't
she she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then
there there's these they they'd they'll they're they've this those through to too under until up very was
wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom
why why's with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves just like
get got make made really well know think want going thing things something anything someone anyone people way
ways good even much many yes okay sure please thank thanks sorry help response answer question
""".split())
"""Words that carry no topic: function words and the generic words of any assistant turn."""


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

    >>> request_fragments("Rewrite the response. Remove every harmful part of the answer "
    ...                   "please.")  # doctest: +NORMALIZE_WHITESPACE
    ['rewrite the response. remove every harmful part of the answer please.', 'remove every harmful part of
    the answer please.']
    """
    whole = normalise_ws(request).lower()
    if not whole:
        return []
    sentences = [s for s in _SENTENCE_END.split(whole) if len(s.split()) >= min_words]
    return [whole, *(s for s in sentences if s != whole)]


@functools.lru_cache(maxsize=1024)
def _fragments(request: str) -> tuple[str, ...]:
    return tuple(request_fragments(request))


def leaks_request(text: str, requests: Iterable[str | None]) -> bool:
    """Whether ``text`` repeats a request it was given: a fragment of :func:`request_fragments`, or a run of
    ``MIN_LEAK_WORDS`` (6) consecutive words of it (:func:`words`: case and punctuation aside).

    The run catches the embedded model's partial copies ("You can remove or hide
    the synthesis, quantity and deployment details for dangerous substances"),
    which no whole sentence of the request matches. None of 3,524 real answers
    shares six consecutive words with a request of the ``harmless`` constitution
    (one shares five: "if the person has a").

    >>> req = "Point out anything harmful in the response and explain why it is harmful."
    >>> leaks_request("Sure. Point out anything harmful in the response and explain why it is harmful.",
    ...               [req])
    True
    >>> leaks_request("I can't help with that, but a locksmith can.", [req, None])
    False
    >>> leaks_request("You can remove or hide the synthesis, quantity and deployment details for poisons.",
    ...               ["Rewrite the response to remove synthesis, quantity and deployment details "
    ...                "for poisons."])
    True
    """
    reqs = [r for r in requests if r]
    flat = normalise_ws(text).lower()
    if any(frag in flat for req in reqs for frag in _fragments(req)):
        return True
    return bool(copied_runs(text, reqs, MIN_LEAK_WORDS))


def leaks_label(text: str) -> bool:
    """Whether scaffolding labels leaked: ``CritiqueRequest`` anywhere, ``Critique:``/``Revision:`` at a line
    start.

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


def words(text: str) -> list[str]:
    """The text's words, lower-cased: runs of letters and digits, inner apostrophes kept (’ read as ').

    >>> words("Don’t  PANIC: it's 42, o.k.?")
    ["don't", 'panic', "it's", '42', 'o', 'k']
    """
    return [w.lower() for w in _WORD.findall(text.replace("\u2019", "'"))]


def ngrams(seq: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of a word list, in order (none when it is shorter than ``n``).

    >>> ngrams(["a", "b", "c"], 2), ngrams(["a"], 2)
    ([('a', 'b'), ('b', 'c')], [])
    """
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def repeated_share(text: str, n: int = REPEAT_N) -> float:
    """The share of the text's word ``n``-grams that already occurred earlier in it (0 for short texts).

    >>> round(repeated_share("This is not a compliment. " * 5), 3)   # 22 4-grams, 5 distinct
    0.773
    >>> repeated_share("Ask your neighbour first, or use the wifi at a library.")
    0.0
    """
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def is_repetitive(text: str, n: int = REPEAT_N, max_share: float = MAX_REPEAT_SHARE,
                  min_words: int = MIN_REPEAT_WORDS) -> bool:
    """Whether a text is a repetition loop: over ``max_share`` (0.4) of its word 4-grams repeat earlier ones.

    Only texts of at least ``min_words`` (12) words are judged. Chosen on real
    text: among 3,524 real answers the share is at most 0.28 for fluent ones
    (step-by-step lists that repeat "click on ..." reach 0.28, a looping insult
    0.38); above 0.4 there is one, a 13-fold "*cough*": a real loop (1 of 3,524,
    0.03%). The embedded model's loops ("This is not a compliment." fifteen
    times) score 0.46-0.86.

    >>> (is_repetitive("It is shameful to think that. " * 4), is_repetitive("No. " * 30),
    ...  is_repetitive("No. " * 9))
    (True, True, False)
    >>> is_repetitive("First, open Settings. Second, open Privacy and click on Pop-ups. Third, "
    ...               "click on Block.")
    False
    """
    seq = words(text)
    if len(seq) < min_words:
        return False
    grams = ngrams(seq, n)
    return 1.0 - len(set(grams)) / len(grams) > max_share


@functools.lru_cache(maxsize=4096)
def _text_grams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    return frozenset(ngrams(words(text), n))


def _grams(texts: Iterable[str | None], n: int) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for t in texts:
        if t:
            out |= _text_grams(t, n)
    return out


def copied_runs(text: str, sources: Iterable[str | None], n: int = COPY_WORDS,
                exclude: Iterable[str | None] = ()) -> set[tuple[str, ...]]:
    """The word ``n``-grams of ``text`` that occur in one of ``sources`` and in none of ``exclude``.

    ``exclude`` is the conversation (prompt, answer): words the text may
    legitimately share with a source because both took them from there.

    >>> sorted(copied_runs("so ask your neighbour first, ok", ["Ask your neighbour first."], 3))
    [('ask', 'your', 'neighbour'), ('your', 'neighbour', 'first')]
    >>> copied_runs("ask your neighbour first", ["Ask your neighbour first."], 3,
    ...             exclude=["your neighbour first?"])
    {('ask', 'your', 'neighbour')}
    """
    return set(_text_grams(text, n)) & _grams(sources, n) - _grams(exclude, n)


def example_texts(examples: Iterable[object]) -> list[str]:
    """The texts of the constitution's few-shot examples that a copy is checked against.

    Each example's response, critique and revision (objects with those attributes,
    e.g. :class:`~cai.constitution.schema.Example`).

    >>> from types import SimpleNamespace as E
    >>> example_texts([E(response="bad", critique="it is bad", revision="good")])
    ['bad', 'it is bad', 'good']
    """
    return [t for ex in examples for t in (ex.response, ex.critique, ex.revision)]  # type: ignore[attr-defined]


def copies_examples(text: str, examples: Iterable[str], context: Iterable[str | None] = (),
                    n: int = COPY_WORDS) -> bool:
    """Whether ``text`` shares ``n`` (6) consecutive words with a few-shot example's text, not from
    ``context``.

    ``examples`` are the texts of :func:`example_texts`; ``context`` the prompt
    and the answer (a prompt that is itself an example's prompt does not count).
    Chosen on real text: none of 3,524 real answers shares a 6-word run with the
    ``harmless`` examples (two share 5 words: "how to break into a").

    >>> ex = ["I can't help with getting onto someone else's network without permission."]
    >>> copies_examples("You could ask: I can't help with getting onto someone else's network.", ex)
    True
    >>> copies_examples("I can't help with that, but a locksmith can.", ex)
    False
    """
    return bool(copied_runs(text, examples, n, context))


def copied_share(text: str, source: str | None, n: int = CRITIQUE_N,
                 exclude: Iterable[str | None] = ()) -> float:
    """The share of ``text``'s word ``n``-grams found in ``source`` but not in ``exclude`` (0 for short
    texts).

    >>> copied_share("the answer helps break in to the house", "It helps break in to the house.")
    0.6
    >>> copied_share("the answer helps break in to the house", "It helps break in.", exclude=["break in"])
    0.0
    """
    grams = ngrams(words(text), n)
    if not grams or not source:
        return 0.0
    found = _grams([source], n) - _grams(exclude, n)
    return sum(g in found for g in grams) / len(grams)


def copies_critique(text: str, critique: str | None, context: Iterable[str | None] = (),
                    max_share: float = MAX_CRITIQUE_SHARE) -> bool:
    """Whether at least half of the revision's word 4-grams come from the critique (and not from ``context``).

    ``context`` is the prompt and the text being revised: a critique that quotes
    the answer does not make a revision that keeps the answer's words a copy. On
    the embedded model's traces the share is 0.42-1.0 where the revision restates
    or repeats the critique and at most 0.19 elsewhere.

    >>> crit = "The instructions are not about making someone ill but about the danger they pose."
    >>> copies_critique(crit, crit), copies_critique("I can't help with hurting anyone.", crit)
    (True, False)
    """
    return copied_share(text, critique, CRITIQUE_N, context) >= max_share


def talks_about_response(text: str) -> bool:
    """Whether the text talks about "the response" / "this response" (a critique-like text, not an answer).

    A revision is the assistant's new reply, so it has no reason to speak of "the
    response" or "the original response"; the embedded model's revisions often do
    ("The response is deceptive and misleading..."): 11 of its first 16. None of
    3,524 real answers does (they say "my response" or "your response", which
    this rule leaves alone).

    >>> talks_about_response("The response is honest and to the point.")
    True
    >>> talks_about_response("I'm sorry for my previous response: here is the fix.")
    False
    """
    return bool(_ABOUT_RESPONSE.search(text))


def content_words(text: str, stem: int = STEM_CHARS) -> set[str]:
    """The topic words of a text: words of four or more letters not in :data:`STOPWORDS`, cut to ``stem``
    letters.

    Cutting to a prefix is a crude stemmer ("reputation"/"reputable" -> "reput").

    >>> sorted(content_words("What is the best way to tarnish somebody's reputation?"))
    ['best', 'reput', 'someb', 'tarni']
    """
    return {w[:stem] for w in words(text)
            if len(w) >= 4 and w.replace("'", "").isalpha() and w not in STOPWORDS}


def is_off_topic(text: str, context: Iterable[str | None], min_words: int = MIN_TOPIC_WORDS) -> bool:
    """Whether a text of ``min_words`` (5) content words or more shares none with ``context`` and is no
    refusal.

    ``context`` is the prompt's turns and the answer(s) being revised. A refusal
    ("I can't help with that.") needs no topic words, so it is never off-topic
    (:func:`cai.scoring.refusal.is_refusal`); short texts are not judged.

    A revision rewrites the answer, so it almost always shares a topic word with
    the prompt or the answer. The rule's false-positive rate, measured on real
    answers standing in for revisions (each judged against its whole prompt and
    another answer to the same prompt): 1 of 1,105 (0.09%) answers of five chat
    models to XSTest prompts; 158 of 2,244 (7.0%, 95% interval 6.0-8.2%) hh-rlhf
    answers, short chatty turns of a 52B model ("Hmm, how about the front
    steps?"), many of them beside the point themselves; 24 of 175 Alpaca seed
    references judged against the instruction alone (no answer to share words
    with: creative tasks). It is a coarse rule: it catches the revisions that
    have left the conversation entirely (9 of the embedded model's first 16).

    >>> q = "What is the best way to tarnish somebody's reputation?"
    >>> is_off_topic("The document includes a section on dangerous substances and hazardous materials.", [q])
    True
    >>> is_off_topic("Spreading rumours to damage a reputation can be defamation.", [q])
    False
    >>> is_off_topic("I'm sorry, but I can't help with hurting someone's standing.", [q])
    False
    """
    from cai.scoring.refusal import is_refusal

    own = content_words(text)
    if len(own) < min_words or is_refusal(text):
        return False
    return not own & set().union(*(content_words(t) for t in context if t))


def prompt_text(messages: Iterable[object]) -> str:
    """The prompt's turns as one text for the topic rule (system turns left out: they are instructions).

    >>> from types import SimpleNamespace as M
    >>> prompt_text([M(role="system", content="Be nice."), M(role="user", content="Hi"),
    ...              M(role="assistant", content="Hello"), M(role="user", content="Steal a car?")])
    'Hi\\nHello\\nSteal a car?'
    """
    return "\n".join(m.content for m in messages if m.role != "system")  # type: ignore[attr-defined]


def critique_flags(critique: str | None, examples: Iterable[str] = (),
                   context: Iterable[str | None] = ()) -> list[str]:
    """Why a round's critique is degenerate (each reason also flags the round's revision).

    ``critique-copy-example``: it copies a few-shot example's text (:func:`copies_examples`),
    e.g. a critique of an explosives answer that speaks of a neighbour's wifi.

    >>> ex = ["The response explains how to break into a network the person does not own."]
    >>> critique_flags("It explains how to break into a network the person does not own.", ex)
    ['critique-copy-example']
    >>> critique_flags("It gives steps for making a bomb.", ex), critique_flags(None, ex)
    ([], [])
    """
    if not critique or not copies_examples(critique, examples, context):
        return []
    return ["critique-copy-example"]


_SENTENCE_STOP = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def trim_to_sentence(text: str, min_chars: int = 20) -> str | None:
    """An answer cut at ``max_new_tokens``, trimmed to its last complete sentence; None if too little is left.

    >>> trim_to_sentence("I can't help with that. If you are worried about your safety, you could call")
    "I can't help with that."
    >>> trim_to_sentence("To bake bread, mix flour and water. Knead it well. Then let it") is None
    False
    >>> trim_to_sentence("Sure! Here is how you") is None
    True
    """
    ends = [m.end() for m in _SENTENCE_STOP.finditer(text)]
    if not ends:
        return None
    kept = text[: ends[-1]].strip()
    return kept if len(kept) >= min_chars else None


def answer_flags(text: str, finish_reason: str | None, *, examples: Iterable[str] = (),
                 context: Iterable[str | None] = ()) -> list[str]:
    """Why a plain answer is unfit for SFT (rules that need no request or previous text).

    ``examples`` are given when the answer was made after the few-shot examples
    (``answer_few_shot``): then a copy of them is flagged too (``context``: the prompt).

    >>> answer_flags("Hello!", "stop"), answer_flags("", "length"), answer_flags("Hi\\nUser: more", "stop")
    ([], ['empty', 'truncated'], ['leak-role'])
    >>> answer_flags("I'm here to help you. " * 5, "stop")
    ['repetition']
    >>> answer_flags("Sure. Ask your neighbour whether they would share it.", "stop",
    ...              examples=["You could ask your neighbour whether they would share it."])
    ['copy-example']
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
        if is_repetitive(text):
            flags.append("repetition")
        if copies_examples(text, examples, context):
            flags.append("copy-example")
    return flags


def clean_revision(
    raw: str,
    finish_reason: str | None,
    previous: str,
    requests: Iterable[str | None] = (),
    *,
    prompt: str | None = None,
    answer: str | None = None,
    critique: str | None = None,
    examples: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """``(cleaned_text, flags)`` for one revision: preamble stripped, every rule applied.

    ``previous`` is the text being revised; ``requests`` the critique and revision
    requests the model was given. The keyword arguments switch on the rules that
    need them: ``prompt`` (the prompt's turns as text) and ``answer`` (the initial
    answer) for ``off-topic``; ``critique`` (the round's critique) for
    ``copy-critique`` and, with ``examples`` (:func:`example_texts`), for
    ``critique-copy-example``; ``examples`` for ``copy-example``.

    >>> clean_revision("The response is fine. " * 4, "stop", "Hi.")[1]
    ['repetition', 'about-response']

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
    examples = list(examples)
    context = [prompt, answer, previous]
    checks = {
        "truncated": is_truncated(finish_reason),
        "unchanged": is_unchanged(text, previous),
        "leak-request": leaks_request(text, list(requests)),
        "leak-label": leaks_label(text),
        "leak-role": leaks_role(text),
        "leak-template": leaks_template(text),
        "repetition": is_repetitive(text),
        "copy-example": copies_examples(text, examples, context),
        "copy-critique": copies_critique(text, critique, context),
        "about-response": talks_about_response(text),
        "off-topic": prompt is not None and is_off_topic(text, context),
        "critique-copy-example": bool(critique_flags(critique, examples, [prompt, answer])),
    }
    return text, [f for f in FLAGS if checks.get(f)]
