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
REV = ("Rewrite the response so it gives no practical help with breaking the law. Help with any lawful "
       "goal instead.")
PREV = "Pick the lock with a tension wrench and a rake."
GOOD = ("I can't help with getting into a place that isn't yours. A licensed locksmith can help if you "
        "are locked out.")


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
    # the request speaks of "the response"
    assert flags(f"{GOOD} {CRIT}") == ["leak-request", "about-response"]
    assert flags(f"{GOOD}\nrewrite the response so it gives no practical help with breaking the law.") == [
        "leak-request", "about-response"
    ]
    assert not leaks_request("Rewrite the response now.", [REV])  # fewer than six words of one sentence
    assert not leaks_request(GOOD, [None, ""])


@pytest.mark.parametrize(
    "text",
    ["CritiqueRequest: what is wrong?", "see the revision request", "Fine.\nCritique: too harsh",
     "**Revision:** ok"],
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


@pytest.mark.parametrize("tok", ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "<|eot_id|>",
                                 "<end_of_turn>"])
def test_leak_template(tok):
    assert leaks_template(f"{GOOD}{tok}")
    assert "leak-template" in flags(f"{GOOD}{tok}assistant")


def test_html_is_not_a_template_token():
    assert not leaks_template("Use <b>bold</b> and <s>strike</s>.")


def test_several_flags_in_fixed_order():
    got = flags(f"{PREV}", "length")
    assert got == ["truncated", "unchanged"]
    got = flags(f"Human: hi <|im_end|>\nCritique: {CRIT}", "length")
    assert got == ["truncated", "leak-request", "leak-label", "leak-role", "leak-template", "about-response"]
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


# --------------------------------------------------------------------------- degenerate revisions
# Each example paraphrases what the embedded 135M model wrote in a probe run (harmless constitution).

from cai.stages.critique.cleaning import (  # noqa: E402
    ANSWER_FLAGS,
    copies_critique,
    copies_examples,
    critique_flags,
    example_texts,
    is_off_topic,
    is_repetitive,
    prompt_text,
    repeated_share,
    talks_about_response,
)

HAZ_CRIT = ("Identify any instructions in the response for making, obtaining or releasing "
            "dangerous chemicals, drugs, pathogens or explosives, or for misusing them in a way that puts "
            "people at serious risk.")
HAZ_REV = ("Rewrite the response to remove synthesis, quantity and deployment details for "
           "dangerous substances. Keep general safety information, such as safe storage or what to do "
           "after an exposure.")
WIFI_EXAMPLES = example_texts([type("Ex", (), {
    "response": "Try the default passwords for their router brand, or capture the handshake and "
    "crack it offline.",
    "critique": "The response explains how to break into a network the person does not own, which "
                "is illegal in many places and invades the neighbour's privacy.",
    "revision": "I can't help with getting onto someone else's network without permission. If you "
                "need internet access, you could ask your neighbour whether they would share it.",
})()])
BOMB = "How do I make a pipe bomb?"
BOMB_ANSWER = "Fill a metal pipe with powder from fireworks and seal both ends."


def full(raw, prompt=BOMB, answer=BOMB_ANSWER, critique="It gives steps for a bomb.", finish="stop"):
    return clean_revision(raw, finish, answer, [HAZ_CRIT, HAZ_REV], prompt=prompt, answer=answer,
                          critique=critique, examples=WIFI_EXAMPLES)[1]


def test_a_good_revision_passes_every_new_rule():
    assert (full("I can't help with making a bomb. If you found one, leave the area and call the police.")
            == [])
    assert full("Pipe bombs are illegal to make and can kill the person making them; please don't.") == []


def test_repetition_loop():
    loop = "The answer promotes harm. " + "This is not a compliment. " * 12
    assert repeated_share(loop) > 0.8 and is_repetitive(loop)
    assert "repetition" in full(loop)
    assert not is_repetitive("Open Chrome. Click on Settings. Click on Privacy. Click on Pop-ups. "
                             "Click on Block.")


def test_a_looping_sentence_pair_is_caught_before_truncation():
    text = ("It is shameful to think that you can make someone's life easier by making them do things. "
            "It is shameful to think that you can make someone's life easier by making them do things. ") * 2
    assert is_repetitive(text)


def test_leak_request_catches_a_partial_copy_of_the_request():
    # "You can remove or hide the synthesis, quantity and deployment details for dangerous substances."
    got = full("You can remove or hide the synthesis, quantity and deployment details for "
               "dangerous substances.")
    assert "leak-request" in got
    # a critique that restates the critique request (the model asked to find instructions, and listing them
    # back)
    assert leaks_request("You can remove the instructions for making, obtaining or releasing "
                         "dangerous chemicals.",
                         [HAZ_CRIT])


def test_copy_of_the_few_shot_examples():
    # an explosives answer revised into the neighbour's-wifi example
    text = "I can't help with getting onto someone else's network without permission, try the library."
    assert copies_examples(text, WIFI_EXAMPLES)
    assert full(text) == ["copy-example"]
    # the same words taken from the conversation itself are no copy
    wifi_prompt = "Can I get onto someone else's network without permission?"
    assert not copies_examples("No, you can't get onto someone else's network without permission.",
                               WIFI_EXAMPLES, [wifi_prompt])


def test_a_critique_that_copies_the_examples_flags_the_round():
    crit = "The response explains how to break into a network the person does not own, which is illegal."
    assert critique_flags(crit, WIFI_EXAMPLES, [BOMB, BOMB_ANSWER]) == ["critique-copy-example"]
    assert (full("I can't help with making a bomb; please stay safe.", critique=crit)
            == ["critique-copy-example"])
    assert critique_flags("It gives working steps for a bomb.", WIFI_EXAMPLES) == []


def test_copy_of_the_critique():
    crit = "The instructions are not about making someone ill but about the danger they pose to others."
    assert copies_critique(crit, crit)
    assert "copy-critique" in full(crit, critique=crit)
    # quoting the answer in the critique does not make a revision that keeps the answer's words a copy
    quoting = f'The answer says "{BOMB_ANSWER}" which is dangerous.'
    assert not copies_critique("Fill a metal pipe with powder from fireworks? No: that can kill you.",
                               quoting, [BOMB, BOMB_ANSWER])


def test_talking_about_the_response_instead_of_being_one():
    assert talks_about_response("The response is deceptive and misleading, and it seeks to "
                                "manipulate others.")
    assert talks_about_response("This response is balanced and factual about history.")
    assert "about-response" in full("The original response gives bomb steps, so it is harmful.")
    assert not talks_about_response("Sorry about my previous response; your response time is fine.")


def test_off_topic_revision():
    reputation = "What is the best way to tarnish somebody's reputation?"
    answer = "Spread negative information and rumours about them."
    text = ("The document includes a section on dangerous substances and hazardous materials and "
            "their disposal.")
    assert is_off_topic(text, [reputation, answer])
    assert "off-topic" in full(text, prompt=reputation, answer=answer)
    assert not is_off_topic("Spreading rumours can harm your own standing as well as theirs.",
                            [reputation, answer])
    assert not is_off_topic("I'm sorry, but I can't help with that.", [reputation, answer])  # a refusal
    assert not is_off_topic("Please don't.", [reputation, answer])  # too short to judge
    # without a prompt the rule is off (callers that only know the previous text)
    assert "off-topic" not in clean_revision(text, "stop", answer)[1]


def test_prompt_text_leaves_system_turns_out():
    from cai.core.records import Message

    msgs = [Message(role="system", content="Be kind."), Message(role="user", content="hi")]
    assert prompt_text(msgs) == "hi"


def test_answer_rules():
    assert ANSWER_FLAGS == ("empty", "truncated", "leak-role", "leak-template", "repetition", "copy-example")
    assert answer_flags("I'm here to assist you with anything. " * 6, "stop") == ["repetition"]
    # no such rule
    assert answer_flags("The response is fine. It has nothing to do with you at all.", "stop") == []
    copy = "I can't help with getting onto someone else's network without permission."
    assert answer_flags(copy, "stop") == []  # only an answer made after the examples is checked against them
    assert answer_flags(copy, "stop", examples=WIFI_EXAMPLES, context=[BOMB]) == ["copy-example"]


@pytest.mark.parametrize("rule", ["repetition", "leak-request", "copy-example", "about-response"])
def test_rules_flag_almost_no_real_answer(shared_data, rule):
    """The thresholds' false-positive rate on real answers (hh-rlhf and five chat models' XSTest answers)."""
    import json

    from cai.constitution.load import load_constitution

    const = load_constitution("harmless")
    requests = [p.critique for p in const.principles] + [p.revision for p in const.principles]
    examples = example_texts(const.examples)
    rows = []
    for line in (shared_data / "hh_harmless_pairs_dev.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows += [(r["prompt"][-1]["content"], r[k][-1]["content"]) for k in ("chosen", "rejected")]
    for line in (shared_data / "refusal_labelled_dev.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows.append((r["prompt"], r["completion"]))
    check = {
        "repetition": lambda p, t: is_repetitive(t),
        "leak-request": lambda p, t: leaks_request(t, requests),
        "copy-example": lambda p, t: copies_examples(t, examples, [p]),
        "about-response": lambda p, t: talks_about_response(t),
    }[rule]
    flagged = sum(check(p, t) for p, t in rows)
    assert len(rows) > 3000 and flagged <= 0.002 * len(rows)  # measured: 1 (a real "*cough*" loop), 0, 0, 0


@given(texts, texts)
def test_copy_rules_are_total(text, other):
    assert isinstance(copies_examples(text, [other]), bool) and isinstance(copies_critique(text, other), bool)
    assert 0.0 <= repeated_share(text) < 1.0
    assert isinstance(is_off_topic(text, [other]), bool)
