"""The feedback question, option reading, strict letter parsing, and the un-swap (property tests)."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.constitution.schema import Constitution, FeedbackExample, Principle
from cai.core.records import Judgement, LabelRecord, Message, Provenance
from cai.stages.label.feedback import (
    ANSWER_PREFIX,
    OPTIONS,
    Ask,
    FeedbackReader,
    Read,
    combine_reads,
    feedback_chat,
    few_shot_turns,
    option_probability,
    parse_choice,
    unswap,
)
from cai.stages.label.labeler import to_preference


def constitution(examples: int = 3) -> Constitution:
    return Constitution(
        name="t", version="1", comparison="Which is better overall?",
        principles=[Principle(id="kind", critique="c", revision="r", comparison="Which is kinder?"),
                    Principle(id="plain", critique="c", revision="r")],
        feedback_examples=[FeedbackExample(prompt=f"q{i}", chosen=f"good{i}", rejected=f"bad{i}",
                                           principle="kind" if i == 0 else None, reasoning=f"why{i}")
                           for i in range(examples)],
    )


def test_chat_shows_conversation_question_and_options_and_opens_the_answer():
    prompt = [Message(role="system", content="SYSTEM SECRET"), Message(role="user", content="Hi"),
              Message(role="assistant", content="Hello"), Message(role="user", content="Help me")]
    chat = feedback_chat([], prompt, "Which is kinder?", "first answer", "second answer", "score")
    assert [m["role"] for m in chat] == ["user", "assistant"]
    body = chat[0]["content"]
    assert "Human: Hi\n\nAssistant: Hello\n\nHuman: Help me" in body
    assert "SYSTEM SECRET" not in body
    assert "Which is kinder?" in body and "(A) first answer\n(B) second answer" in body
    assert chat[1]["content"] == ANSWER_PREFIX == "The better response is ("


def test_few_shot_alternates_the_better_answers_letter():
    c = constitution(3)
    turns = few_shot_turns(c, "score")
    assert [t.role for t in turns] == ["user", "assistant"] * 3
    answers = [t.content for t in turns[1::2]]
    assert answers == ["The better response is (A).", "The better response is (B).",
                       "The better response is (A)."]
    for i, (user, letter) in enumerate(zip(turns[0::2], "ABA")):
        assert f"({letter}) good{i}" in user.content  # the chosen answer sits at the letter the answer names
    assert "Which is kinder?" in turns[0].content  # example 0 names principle 'kind'
    assert "Which is better overall?" in turns[2].content
    cot = few_shot_turns(c, "cot")
    assert cot[1].content == "why0\n\nSo the better response is (A)."
    assert [t.content for t in few_shot_turns(c, "letter")[1::2]] == ["A", "B", "A"]


def test_options_are_single_clean_tokens_for_the_tiny_tokenizer(tiny_model_dir):
    from cai.backends.hf.backend import HFBackend

    be = HFBackend(str(tiny_model_dir))
    chat = feedback_chat([], [Message(role="user", content="Hi")], "Which?", "x", "y", "score")
    prefix = be.render(chat)
    for letter in OPTIONS:
        ids = be.tokenizer(letter, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
        joined = be.tokenizer(be.tokenizer.decode(prefix) + letter, add_special_tokens=False)["input_ids"]
        assert joined == prefix + ids  # scoring "A" after the prefix = the text "... is (A" tokenized whole


@pytest.mark.integration
def test_options_are_single_clean_tokens_for_the_embedded_model():
    from cai.backends.hf.loading import load_tokenizer

    tok = load_tokenizer("default")
    text = tok.apply_chat_template(
        feedback_chat([], [Message(role="user", content="Hi")], "Which?", "x", "y", "score"),
        tokenize=False, continue_final_message=True)
    prefix = tok(text, add_special_tokens=False)["input_ids"]
    for letter in OPTIONS:
        ids = tok(letter, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
        assert tok(text + letter, add_special_tokens=False)["input_ids"] == prefix + ids


# ----------------------------------------------------------------------------- option probability

logp = st.floats(min_value=-50, max_value=0, allow_nan=False)


@given(logp, logp)
def test_option_probability_is_a_two_way_softmax(la, lb):
    p = option_probability(la, lb)
    assert 0.0 <= p <= 1.0
    assert abs(p + option_probability(lb, la) - 1.0) < 1e-9
    assert abs(p - math.exp(la) / (math.exp(la) + math.exp(lb))) < 1e-9 if max(la, lb) > -30 else True
    if abs(la - lb) > 1e-6:
        assert (p > 0.5) == (la > lb)


class FixedScores:
    """A backend whose score returns the same two option log-probs for every chat."""

    model, kind = "fixed", "fake"

    def __init__(self, la: float, lb: float):
        self.pair = [la, lb]

    def score(self, chats, continuations):
        return [list(self.pair) for _ in chats]

    def generate(self, chats, params):
        raise AssertionError("scoring works: no generation")


def _read(backend, n_asks: int = 2) -> list[Judgement]:
    from tests.helpers.fakes import constitution as fake_constitution

    const = fake_constitution()
    asks = [Ask(prompt=[Message(role="user", content=f"q{i}")], answer_a="x", answer_b="y",
                principles=const.principles[:2]) for i in range(n_asks)]
    return [j for js in FeedbackReader(backend, const, few_shot=False).read(asks) for j in js]


def test_both_options_absent_is_a_counted_failed_read():
    reads = _read(FixedScores(-math.inf, -math.inf))
    assert len(reads) == 8 and all(j.p_option_a is None and j.error for j in reads)
    assert all(j.method == "logprobs" for j in reads)


def test_low_option_mass_warns_once_per_call(caplog):
    with caplog.at_level("WARNING", logger="cai.stages.label.feedback"):
        reads = _read(FixedScores(math.log(0.04), math.log(0.02)))
    warnings = [r for r in caplog.records if "option letters" in r.getMessage()]
    assert len(warnings) == 1 and "0.06" in warnings[0].getMessage()
    assert "unreliable" in warnings[0].getMessage()
    assert reads[0].p_option_a == pytest.approx(2 / 3)  # the reads themselves still count
    caplog.clear()
    with caplog.at_level("WARNING", logger="cai.stages.label.feedback"):
        _read(FixedScores(math.log(0.6), math.log(0.3)))
    assert not [r for r in caplog.records if "option letters" in r.getMessage()]


# ----------------------------------------------------------------------------- strict parser

delims = st.sampled_from([" ", ".", ",", ":", "!", "\n", ""])
safe_tail = st.text(alphabet=string.ascii_lowercase + " .,!\n", max_size=40)


@given(st.sampled_from(OPTIONS), st.sampled_from(["", "(", "**", "'"]), delims, safe_tail,
       st.sampled_from(["", "The better response is ", "Answer: ", "answer is ",
                        "So the better response is "]))
def test_parse_choice_reads_a_leading_letter(letter, opener, delim, tail, lead):
    closer = {"(": ")", "**": "**", "'": "'", "": ""}[opener]
    text = f"{lead}{opener}{letter}{closer}" + (f"{delim or ' '}{tail}" if tail else delim)
    assert parse_choice(text) == letter


@given(st.text(max_size=60))
def test_parse_choice_never_guesses(text):
    got = parse_choice(text)
    assert got in (None, "A", "B")
    if got is not None:
        other = "B" if got == "A" else "A"
        assert got in text
        # the other letter never stands alone in an accepted answer
        import re

        assert not re.search(rf"(?<![A-Za-z0-9]){other}(?![A-Za-z0-9])", text)


@given(safe_tail, safe_tail)
def test_parse_choice_refuses_answers_naming_both(t1, t2):
    assert parse_choice(f"A{t1} or (B){t2}") is None
    assert parse_choice(f"(B) {t1} A {t2}") is None


# ----------------------------------------------------------------------------- the un-swap

def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _label(answer_a: str, answer_b: str, reads: list[Judgement], used: list[str]) -> LabelRecord:
    comb = combine_reads([Read(j.principle_id, j.order, j.p_option_a) for j in reads])
    return LabelRecord(
        id="x", pair_id="p", prompt=[Message(role="user", content="q")],
        answer_a=[Message(role="assistant", content=answer_a)],
        answer_b=[Message(role="assistant", content=answer_b)],
        status="ok" if comb.p_a is not None else "failed", p_a=comb.p_a, p_a_ab=comb.p_a_ab,
        p_a_ba=comb.p_a_ba, position_consistent=comb.position_consistent, principle_ids=used,
        used_principle_ids=list(comb.used),
        judgements=reads, provenance=Provenance(model="m", backend="fake"),
    )


def _judge_reads(answer_a: str, answer_b: str, better: str, strengths: list[float],
                 bias: float) -> list[Judgement]:
    """A judge that prefers ``better`` with logit ``strength`` and adds ``bias`` to option (A)'s logit."""
    reads = []
    for k, s in enumerate(strengths):
        for order in ("ab", "ba"):
            shown_a = answer_a if order == "ab" else answer_b
            logit = (s if shown_a == better else -s) + bias
            reads.append(Judgement(principle_id=f"p{k}", order=order, method="logprobs",
                                   p_option_a=_sigmoid(logit)))
    return reads


strength = st.floats(min_value=0.01, max_value=8)


@settings(max_examples=200)
@given(st.booleans(), st.lists(strength, min_size=1, max_size=4), st.floats(min_value=-12, max_value=12))
def test_unswap_names_the_better_answer_in_any_order_whatever_the_position_bias(swap, strengths, bias):
    good, bad = "the good answer", "the bad answer"
    a, b = (bad, good) if swap else (good, bad)
    rec = _label(a, b, _judge_reads(a, b, good, strengths, bias), [f"p{k}" for k in range(len(strengths))])
    pref = to_preference(rec)
    assert pref is not None
    assert pref.chosen[0].content == good and pref.rejected[0].content == bad
    assert 0.5 <= pref.p_chosen <= 1.0
    assert abs(pref.p_chosen - (pref.ai_label.p_chosen_as_a + pref.ai_label.p_chosen_as_b) / 2) < 1e-9
    # the same pair given in the other order gets the same label
    other = to_preference(_label(b, a, _judge_reads(b, a, good, strengths, bias), rec.principle_ids))
    assert other.chosen == pref.chosen and abs(other.p_chosen - pref.p_chosen) < 1e-9
    assert abs(other.ai_label.p_chosen_as_a - pref.ai_label.p_chosen_as_a) < 1e-9
    if bias == 0:
        assert pref.ai_label.position_consistent


@given(st.floats(min_value=0.5001, max_value=1.0))
def test_a_reader_that_always_says_A_gives_an_inconsistent_coin_flip(p):
    comb = combine_reads([Read("x", "ab", p), Read("x", "ba", p)])
    assert abs(comb.p_a - 0.5) < 1e-9 and comb.position_consistent is False


reads_st = st.lists(
    st.tuples(st.sampled_from(["p0", "p1", "p2"]), st.sampled_from(["ab", "ba"]),
              st.one_of(st.none(), st.floats(min_value=0, max_value=1))),
    max_size=8,
)


@given(reads_st)
def test_a_failed_read_never_becomes_a_label(raw_reads):
    reads = [Read(pid, order, p) for pid, order, p in raw_reads]
    comb = combine_reads(reads)
    latest: dict[tuple[str, str], float | None] = {(pid, order): p for pid, order, p in raw_reads}
    complete = {pid for pid, _, _ in raw_reads
                if latest.get((pid, "ab")) is not None and latest.get((pid, "ba")) is not None}
    assert set(comb.used) == complete
    if not complete:
        assert comb.p_a is None
        judgements = [Judgement(principle_id=r.principle_id, order=r.order, method="generated",
                                p_option_a=r.p_option_a, raw="???") for r in reads]
        assert to_preference(_label("x", "y", judgements, ["p0"])) is None
    else:
        expect = sum((unswap(latest[(pid, "ab")], "ab") + unswap(latest[(pid, "ba")], "ba")) / 2
                     for pid in complete) / len(complete)
        assert abs(comb.p_a - expect) < 1e-9
