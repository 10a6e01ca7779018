"""Reading option log-probs off one position's top_logprobs, and which continuations can be read at all."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cai.backends.openai.logprobs import is_short_option, option_logprobs


def top(*pairs: tuple[str, float]) -> list[dict]:
    return [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in pairs]


def test_option_logprobs_letters_with_brackets():
    # "(" is shared by both options and counts for neither; letter tokens decide.
    lps = option_logprobs(
        top(("(", -0.05), ("A", -3.0), (" A", -4.0), ("B", -5.0), ("(B", -6.0)), ["(A)", "(B)"]
    )
    assert lps[0] == pytest.approx(math.log(math.exp(-3.0) + math.exp(-4.0)))
    assert lps[1] == pytest.approx(math.log(math.exp(-5.0) + math.exp(-6.0)))


def test_option_logprobs_exact_prefix_and_shared_prefix():
    entries = top(("Yes", -0.2), ("Y", -3.0), ("No", -2.0), ("Ap", -1.0))
    yes, no = option_logprobs(entries, ["Yes", "No"])
    assert yes == pytest.approx(math.log(math.exp(-0.2) + math.exp(-3.0)))
    assert no == -2.0
    # "Ap" is a prefix of both options: it tells them apart for neither.
    apple, avocado = option_logprobs(top(("Ap", -0.5), ("Apple", -2.0), ("Z", -9.0)), ["Apple", "Apricot"])
    assert apple == -2.0 and avocado == -9.0


def test_option_logprobs_absent_and_empty_and_duplicates():
    entries = top(("A", -1.0), ("The", -7.5))
    # One option listed: the others get the smallest listed log-prob, an upper bound for a one-token option.
    assert option_logprobs(entries, ["A", "B", "C"]) == [-1.0, -7.5, -7.5]
    # No option listed: nothing was observed; -inf for all (a failed read), never a tie at the floor.
    assert option_logprobs(top(("(", -0.1), ("The", -2.0)), ["A", "B"]) == [-math.inf, -math.inf]
    assert option_logprobs([], ["A"]) == [-math.inf]
    assert option_logprobs(top(("A", -1.0), ("A", -1.0)), ["A"]) == [-1.0]  # an identical entry counts once
    assert option_logprobs(top(("A", -1.0), ("A", -2.0)), ["A"])[0] == pytest.approx(
        math.log(math.exp(-1.0) + math.exp(-2.0))
    )
    assert option_logprobs(top(("\n", -0.1), ("A", -2.0)), [" A "]) == [-2.0]


tokens = st.sampled_from(["A", " A", "(A", "B", " B", "B)", "(", "The", "\n", "Yes", "x"])
listed = st.lists(st.tuples(tokens, st.floats(min_value=-30, max_value=0)), max_size=8)


@given(listed)
def test_an_absent_pair_is_never_a_coin_flip(entries):
    from cai.stages.label.feedback import option_probability

    la, lb = option_logprobs(top(*entries), ["A", "B"])
    seen = {t.strip(" (") for t, _ in entries} & {"A", "B", "A)", "B)"}
    if not seen:  # neither option listed: a failed read
        assert la == lb == -math.inf and option_probability(la, lb) is None
    else:  # at least one listed: both finite, an absent one at the smallest listed log-prob
        assert math.isfinite(la) and math.isfinite(lb)
        floor = min(lp for _, lp in entries)
        assert min(la, lb) >= floor
        assert option_probability(la, lb) is not None


@given(st.text(max_size=20))
def test_short_options_are_short_and_one_word(text):
    if is_short_option(text):
        core = text.strip()
        assert 0 < len(core) <= 8 and core.split() == [core]
    elif text.strip() and len(text.strip()) <= 8:
        assert any(ch.isspace() for ch in text.strip())
