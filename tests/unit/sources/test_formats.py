"""Format adapters: round trips and 'only CaiError on odd input' (hypothesis), and real hh-rlhf pairs
rendered as the published raw transcripts and read back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.core.errors import CaiError
from cai.core.records import PreferenceRecord, PromptRecord
from cai.sources.formats import (
    adapt_pair,
    adapt_prompt,
    from_hh_rlhf,
    from_implicit_prompt,
    from_pku_saferlhf,
    from_ultrafeedback,
    pair_format,
    parse_transcript,
    render_transcript,
)

# contents as a parsed transcript gives them back: stripped, never holding a turn marker
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(str.strip).filter(
    lambda s: "\n\nHuman:" not in s and "\n\nAssistant:" not in s)
ANSWER = st.builds(lambda c: {"role": "assistant", "content": c}, TEXT)


@st.composite
def prompts(draw) -> list[dict]:
    """A conversation ending with a user turn (alternating roles)."""
    n = draw(st.integers(0, 2))
    turns = []
    for _ in range(n):
        turns += [{"role": "user", "content": draw(TEXT)}, {"role": "assistant", "content": draw(TEXT)}]
    return turns + [{"role": "user", "content": draw(TEXT)}]


@st.composite
def distinct_answers(draw) -> tuple[dict, dict]:
    a = draw(ANSWER)
    b = draw(ANSWER.filter(lambda m: m["content"] != a["content"]))
    return a, b


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
                       max_leaves=8)
KEYS = st.sampled_from(["prompt", "chosen", "rejected", "response_0", "response_1", "safer_response_id",
                        "better_response_id", "goal", "Behavior", "question", "ContextString", "id", "x"])
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", 3]),
                                           "content": TEXT | st.integers()}), max_size=4)
ROWS = st.dictionaries(KEYS, JSONISH | MESSAGES | TEXT.map(lambda t: f"\n\nHuman: {t}\n\nAssistant: x"),
                       max_size=6)


@given(prompts())
def test_transcript_round_trip(messages):
    assert parse_transcript(render_transcript(messages)) == messages


@given(prompts(), distinct_answers())
@settings(max_examples=60)
def test_hh_rlhf_round_trip(prompt, answers):
    a, b = answers
    row = {"chosen": render_transcript(prompt + [a]), "rejected": render_transcript(prompt + [b])}
    assert pair_format(row) == "hh-rlhf"
    out = from_hh_rlhf(row)
    assert (out["prompt"], out["chosen"], out["rejected"]) == (prompt, [a], [b])
    PreferenceRecord.model_validate(adapt_pair(row))


@given(prompts(), distinct_answers())
@settings(max_examples=60)
def test_implicit_prompt_round_trip(prompt, answers):
    a, b = answers
    row = {"chosen": prompt + [a], "rejected": prompt + [b], "score": 1}
    assert pair_format(row) == "implicit-prompt"
    out = from_implicit_prompt(row)
    assert (out["prompt"], out["chosen"], out["rejected"]) == (prompt, [a], [b])
    assert out["metadata"] == {"score": 1}


@given(prompts(), distinct_answers())
@settings(max_examples=60)
def test_ultrafeedback_round_trip(prompt, answers):
    a, b = answers
    row = {"prompt": prompt, "chosen": prompt + [a], "rejected": prompt + [b], "score_chosen": 9.0}
    assert pair_format(row) == "ultrafeedback"
    out = adapt_pair(row)
    assert (out["prompt"], out["chosen"], out["rejected"]) == (prompt, [a], [b])
    assert out["metadata"] == {"score_chosen": 9.0}


@given(TEXT, TEXT, TEXT, st.sampled_from([0, 1, "0", "1"]), st.booleans())
def test_pku_saferlhf_picks_the_named_response(prompt, r0, r1, choice, better):
    key = "better_response_id" if better else "safer_response_id"
    row = {"prompt": prompt, "response_0": r0, "response_1": r1, key: choice}
    out = from_pku_saferlhf(row)
    i = int(choice)
    assert (out["chosen"], out["rejected"]) == ([r0, r1][i], [r0, r1][1 - i])
    assert out["metadata"]["chosen_by"] == key


def test_pku_default_is_safer_and_chosen_id_overrides():
    row = {"prompt": "q", "response_0": "A", "response_1": "B", "safer_response_id": 1,
           "better_response_id": 0}
    assert from_pku_saferlhf(row)["chosen"] == "B"
    assert from_pku_saferlhf({**row, "chosen_id": 0})["chosen"] == "A"


def test_ultrafeedback_string_prompt_shape():
    row = {"prompt": "q", "prompt_id": "p1", "messages": [],
           "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "B"}]}
    rec = PreferenceRecord.model_validate(from_ultrafeedback(row))
    assert [m.role for m in rec.prompt + rec.chosen] == ["user", "assistant"]
    assert rec.chosen[0].content == "A"


@given(ROWS)
@settings(max_examples=300)
def test_pair_adapter_raises_only_cai_error(row):
    for keep in (False, True):
        try:
            out = adapt_pair(row, keep_extra=keep)
        except CaiError:
            continue
        assert isinstance(out, dict) and {"prompt", "chosen", "rejected"} <= set(out)


@given(ROWS)
@settings(max_examples=300)
def test_prompt_adapter_raises_only_cai_error(row):
    try:
        out = adapt_prompt(row, keep_extra=True)
    except CaiError:
        return
    assert "prompt" in out


@pytest.mark.parametrize("row, prompt", [
    ({"prompt": "Write a script", "target": "Sure, here is"}, "Write a script"),  # AdvBench (shared data)
    ({"goal": "Write a script", "target": "Sure, here is"}, "Write a script"),  # AdvBench CSV
    ({"Behavior": "Give instructions", "FunctionalCategory": "standard", "BehaviorID": "b1"},
     "Give instructions"),  # HarmBench
    ({"id": 0, "risk_area": "Malicious Uses", "question": "How can I hack?"}, "How can I hack?"),  # DNA
])
def test_prompt_shapes_become_prompt_records(row, prompt):
    rec = PromptRecord.model_validate(adapt_prompt(row, keep_extra=True))
    assert rec.prompt == prompt and "prompt" not in rec.metadata


def test_unknown_shapes_name_their_columns_and_a_mapping():
    with pytest.raises(CaiError, match=r"columns instruction, output fit no prompt .*#prompt=instruction"):
        adapt_prompt({"instruction": "a", "output": "b"})
    with pytest.raises(CaiError, match=r"columns q, good, bad .*#prompt=q,chosen=good,rejected=bad"):
        adapt_pair({"q": "a", "good": "b", "bad": "c"})


def test_real_hh_pairs_through_the_raw_transcript_format(shared_data):
    """hh_harmless_pairs_dev.jsonl rendered back as hh-rlhf's raw strings: every pair reads back the same."""
    rows = [json.loads(x) for x in (shared_data / "hh_harmless_pairs_dev.jsonl").read_text().splitlines()]
    same = 0
    for r in rows:
        raw = {"chosen": render_transcript(r["prompt"] + r["chosen"]),
               "rejected": render_transcript(r["prompt"] + r["rejected"])}
        rec = PreferenceRecord.model_validate(adapt_pair(raw))
        want = PreferenceRecord.model_validate(r)
        same += (rec.prompt, rec.chosen[-1].content, rec.rejected[-1].content) == (
            want.prompt, want.chosen[-1].content, want.rejected[-1].content)
    assert same == len(rows) == 1122
