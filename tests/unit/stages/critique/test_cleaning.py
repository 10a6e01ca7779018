"""Cleaning rules for revisions: each rule, the combined verdict, and properties of the normaliser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cai.stages.critique.cleaning import (
    FLAGS,
    answer_flags,
    clean_revision,
    is_unchanged,
    leaks_label,
    leaks_request,
    leaks_role,
    leaks_template,
    normalise_ws,
    strip_preamble,
)

CRIT = "Identify anything in the response that would help someone commit a crime, such as theft or fraud."
REV = "Rewrite the response so it gives no practical help with breaking the law. Help with any lawful goal instead."
PREV = "Pick the lock with a tension wrench and a rake."
GOOD = "I can't help with getting into a place that isn't yours. A licensed locksmith can help if you are locked out."


def flags(raw: str, finish: str = "stop", prev: str = PREV) -> list[str]:
    return clean_revision(raw, finish, prev, [CRIT, REV])[1]


def test_clean_revision_passes_a_good_revision():
    assert clean_revision(GOOD, "stop", PREV, [CRIT, REV]) == (GOOD, [])


@pytest.mark.parametrize("raw", ["", "   ", "\n\t\n"])
def test_empty(raw):
    assert flags(raw) == ["empty"]
    assert flags(raw, "length") == ["empty", "truncated"]


def test_truncated():
    assert flags(GOOD, "length") == ["truncated"]
    assert flags(GOOD, "stop") == []


def test_unchanged_after_whitespace_normalisation():
    assert flags("Pick the lock  with a tension\nwrench and a rake.") == ["unchanged"]
    assert flags("  " + PREV + "\n") == ["unchanged"]
    assert flags(PREV.lower()) == []  # case is a change
    assert is_unchanged("a b", "a\n\tb") and not is_unchanged("a b", "ab")


def test_unchanged_sees_through_a_stripped_preamble():
    assert flags("Revision: " + PREV) == ["unchanged"]


def test_leak_request_whole_or_a_long_sentence():
    assert flags(f"{GOOD} {CRIT}") == ["leak-request"]
    assert flags(f"{GOOD}\nrewrite the response so it gives no practical help with breaking the law.") == [
        "leak-request"
    ]
    assert not leaks_request("Rewrite the response now.", [REV])  # fewer than six words of one sentence
    assert not leaks_request(GOOD, [None, ""])


@pytest.mark.parametrize(
    "text",
    ["CritiqueRequest: what is wrong?", "see the revision request", "Fine.\nCritique: too harsh", "**Revision:** ok"],
)
def test_leak_label(text):
    assert leaks_label(text)
    assert "leak-label" in flags(f"{GOOD}\n{text}")


@pytest.mark.parametrize("text", ["A revision: is what we need", "No critique needed.", "I revised it."])
def test_no_leak_label_in_plain_prose(text):
    assert not leaks_label(text)


@pytest.mark.parametrize("label", ["User:", "Assistant:", "Human:", "system:", "  **Human:**"])
def test_leak_role_at_line_start(label):
    assert leaks_role(f"{GOOD}\n{label} thanks")
    assert flags(f"{GOOD}\n{label} thanks") == ["leak-role"]


def test_role_word_mid_line_is_fine():
    assert not leaks_role("Tell the user: no, the assistant: helpful.")
    assert flags("Ask the user: is this your home?") == []


@pytest.mark.parametrize("tok", ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "<|eot_id|>", "<end_of_turn>"])
def test_leak_template(tok):
    assert leaks_template(f"{GOOD}{tok}")
    assert "leak-template" in flags(f"{GOOD}{tok}assistant")


def test_html_is_not_a_template_token():
    assert not leaks_template("Use <b>bold</b> and <s>strike</s>.")


def test_several_flags_in_fixed_order():
    got = flags(f"{PREV}", "length")
    assert got == ["truncated", "unchanged"]
    got = flags(f"Human: hi <|im_end|>\nCritique: {CRIT}", "length")
    assert got == ["truncated", "leak-request", "leak-label", "leak-role", "leak-template"]
    assert got == [f for f in FLAGS if f in got]


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Revision: " + GOOD, GOOD),
        ("Revised response:\n\n" + GOOD, GOOD),
        ("Here is the revised response:\n" + GOOD, GOOD),
        ("Here's a rewritten version of the response: " + GOOD, GOOD),
        ("**Revision:**\n" + GOOD, GOOD),
        ("Here is the answer: " + GOOD, "Here is the answer: " + GOOD),  # not a revision preamble
        ("Revision control is useful: " + GOOD, "Revision control is useful: " + GOOD),
    ],
)
def test_strip_preamble(raw, cleaned):
    assert strip_preamble(raw) == cleaned
    text, _ = clean_revision(raw, "stop", PREV, [CRIT, REV])
    assert text == cleaned


def test_preamble_alone_is_not_emptied():
    assert clean_revision("Revision:", "stop", PREV) == ("Revision:", ["leak-label"])


def test_answer_flags():
    assert answer_flags(GOOD, "stop") == []
    assert answer_flags("", "stop") == ["empty"]
    assert answer_flags(GOOD, "length") == ["truncated"]
    assert answer_flags(f"{GOOD}\nUser: and then?<|im_start|>", "stop") == ["leak-role", "leak-template"]


# --------------------------------------------------------------------------- properties

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@given(texts)
def test_normalise_ws_is_idempotent_and_has_no_runs(text):
    once = normalise_ws(text)
    assert normalise_ws(once) == once
    assert "  " not in once and once == once.strip()


@given(texts)
def test_strip_preamble_only_removes_a_prefix(text):
    out = strip_preamble(text)
    assert out == out.strip()
    assert out in text.strip() and text.strip().endswith(out)


@given(texts, st.sampled_from(["stop", "length"]), texts)
def test_clean_revision_is_total_and_flags_are_known(raw, finish, prev):
    text, got = clean_revision(raw, finish, prev, [CRIT, REV])
    assert set(got) <= set(FLAGS)
    assert got == [f for f in FLAGS if f in got]
    assert ("truncated" in got) == (finish == "length")
    assert ("empty" in got) == (not text.strip())
    assert text == text.strip()


@given(texts)
def test_adding_a_template_token_always_flags(text):
    _, got = clean_revision(GOOD + " " + text + "<|im_start|>", "stop", PREV)
    assert "leak-template" in got
