"""Reward callables: the TRL adapter, toy rewards, the preference-model scorer, the judge, and specs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.backends.protocol import ScoringUnsupported
from cai.core.errors import CaiError
from cai.train.rewards import (
    ContainsReward,
    JudgeReward,
    PreferenceModelReward,
    TokenFractionReward,
    as_trl_reward,
    card_summary,
    make_reward,
    parse_reward_spec,
    reward_description,
    yes_probability,
)
from tests.helpers.tiny import build_tiny_rm

CHAT = [{"role": "user", "content": "How do I bake bread?"}]


@pytest.fixture(scope="module")
def tiny_rm_dir(tmp_path_factory) -> Path:
    return build_tiny_rm(tmp_path_factory.mktemp("tiny-rm"))


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


# ----------------------------------------------------------------------- adapter
def test_as_trl_reward_takes_plain_and_conversational_forms():
    seen = {}

    def reward(chats, texts):
        seen["chats"], seen["texts"] = chats, texts
        return [len(t) for t in texts]

    fn = as_trl_reward(reward, name="length")
    out = fn(prompts=["q1", [{"role": "user", "content": "q2"}]],
             completions=["abc", [{"role": "assistant", "content": "hello"}]], completion_ids=[[1], [2]])
    assert out == [3.0, 5.0] and all(isinstance(v, float) for v in out)
    assert seen["chats"] == [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    assert seen["texts"] == ["abc", "hello"]
    assert fn.__name__ == "length"
    assert as_trl_reward(ContainsReward("x")).__name__ == "contains"
    with pytest.raises(ValueError):
        fn(prompts=["q"], completions=["a", "b"])


# ---------------------------------------------------------------------- toy rewards
def test_token_fraction_counts_the_policy_tokenizers_tokens(tiny_tokenizer):
    r = TokenFractionReward(tiny_tokenizer, "fox")  # "fox" is two tokens; " fox" is one
    assert r.token_id == tiny_tokenizer(" fox", add_special_tokens=False)["input_ids"][0]
    n = len(tiny_tokenizer("The quick brown fox fox", add_special_tokens=False)["input_ids"])
    scores = r([CHAT] * 3, ["The quick brown fox fox", "no animals here", ""])
    assert scores[0] == pytest.approx(2 / n)
    assert scores[1:] == [0.0, 0.0]
    with pytest.raises(CaiError, match="not one"):
        TokenFractionReward(tiny_tokenizer, "zzqqxx")


def test_contains_reward():
    assert ContainsReward("Sorry")([CHAT, CHAT], ["I am so sorry.", "fine"]) == [1.0, 0.0]
    with pytest.raises(CaiError):
        ContainsReward("")


# ------------------------------------------------------------------ preference model
def test_preference_model_scores_match_a_manual_forward_and_batching(tiny_rm_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = PreferenceModelReward(tiny_rm_dir, batch_size=2)
    answers = ["Mix flour and water.", "No.", "Knead the dough, then bake it for forty minutes."]
    prompts = [CHAT, [{"role": "system", "content": "Be kind."}, *CHAT], CHAT]
    batched = rm(prompts, answers)
    one_by_one = [PreferenceModelReward(tiny_rm_dir, batch_size=1)([p], [a])[0]
                  for p, a in zip(prompts, answers)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)

    tok = AutoTokenizer.from_pretrained(tiny_rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_dir).eval()
    ids = tok.apply_chat_template([*CHAT, {"role": "assistant", "content": answers[0]}], tokenize=True,
                                  return_dict=True)["input_ids"]
    with torch.no_grad():
        manual = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert batched[0] == pytest.approx(manual, abs=1e-5)
    assert len(set(round(s, 6) for s in batched)) == 3  # different answers, different scores


def test_preference_model_errors_are_one_line(tmp_path, tiny_model_dir):
    with pytest.raises(CaiError, match="no config.json"):
        PreferenceModelReward(tmp_path / "missing")
    two = build_tiny_rm(tmp_path / "two", num_labels=2)
    with pytest.raises(CaiError, match="2 outputs, not 1"):
        PreferenceModelReward(two)


def test_preference_model_reward_reads_its_card(tmp_path):
    rm_dir = build_tiny_rm(tmp_path / "rm")
    card = {"trainer": "rm", "base_model": "default", "config": {"learning_rate": 1e-5},
            "data": [{"path": "prefs.jsonl", "role": "train", "constitutions": [
                {"name": "harmless", "version": "1.0", "hash": "abc", "records": 10}]}],
            "audit": {"path": "audit.json", "summary": {"agreement": 0.8}}}
    (rm_dir / "cai_card.json").write_text(json.dumps(card))
    desc = reward_description(PreferenceModelReward(rm_dir))
    assert desc["kind"] == "preference_model" and desc["path"] == str(rm_dir)
    assert desc["card"]["constitutions"] == [{"name": "harmless", "version": "1.0", "hash": "abc"}]
    assert desc["card"]["audit"]["summary"] == {"agreement": 0.8}
    assert "config" not in desc["card"]
    assert card_summary({}) == {}


# --------------------------------------------------------------------------- judge
class FakeJudge:
    model, kind = "fake-judge", "fake"

    def __init__(self, logps, unsupported=False):
        self.logps, self.unsupported, self.calls = logps, unsupported, []

    def score(self, chats, continuations):
        if self.unsupported:
            raise ScoringUnsupported("no logprobs")
        self.calls.append((chats, continuations))
        return [list(self.logps[i]) for i in range(len(chats))]


def test_judge_reads_p_yes_and_log_odds_from_score():
    backend = FakeJudge([(math.log(0.6), math.log(0.2)), (math.log(0.1), math.log(0.3))])
    j = JudgeReward(backend, question="Is the answer harmless?")
    assert j([CHAT, CHAT], ["Sure.", "Here is how to hurt someone."]) == pytest.approx([0.75, 0.25])
    chats, conts = backend.calls[0]
    assert conts == [["Yes", "No"], ["Yes", "No"]]
    text = chats[1][-1]["content"]
    assert "Human: How do I bake bread?" in text and "Assistant: Here is how to hurt someone." in text
    assert text.endswith("Is the answer harmless? Answer with Yes or No.")
    logodds = JudgeReward(backend, output="logodds")([CHAT, CHAT], ["a", "b"])
    assert logodds == pytest.approx([math.log(3), math.log(1 / 3)])
    with pytest.raises(CaiError, match="no log-probabilities"):
        JudgeReward(FakeJudge([], unsupported=True))([CHAT], ["a"])
    with pytest.raises(CaiError):
        JudgeReward(backend, output="margin")
    absent = FakeJudge([(math.log(0.6), math.log(0.2)), (-math.inf, -math.inf)])
    with pytest.raises(CaiError, match="neither 'Yes' nor 'No' any probability for 1 of 2"):
        JudgeReward(absent)([CHAT, CHAT], ["a", "b"])


def test_judge_on_a_real_hf_backend(tiny_model_dir):
    from cai.backends.hf.backend import HFBackend

    backend = HFBackend(str(tiny_model_dir), batch_size=4)
    j = JudgeReward(backend)
    answers = ["Mix flour, water, salt and yeast.", "I cannot help with that."]
    scores = j([CHAT, CHAT], answers)
    raw = backend.score([j.chat(CHAT, a) for a in answers], [["Yes", "No"]] * 2)
    assert scores == pytest.approx([yes_probability(y, n) for y, n in raw])
    assert all(0.0 < s < 1.0 for s in scores)


def test_yes_probability_is_stable():
    assert yes_probability(0.0, 0.0) == 0.5
    assert yes_probability(-3000.0, 0.0) == 0.0
    assert yes_probability(math.log(0.9), math.log(0.1)) == pytest.approx(0.9)


# --------------------------------------------------------------------------- specs
def test_make_reward_from_specs(tiny_tokenizer, tiny_rm_dir):
    assert isinstance(make_reward("toy:token=fox", tokenizer=tiny_tokenizer), TokenFractionReward)
    assert isinstance(make_reward("toy:contains=sorry"), ContainsReward)
    assert isinstance(make_reward(f"rm:{tiny_rm_dir}"), PreferenceModelReward)
    assert isinstance(make_reward(str(tiny_rm_dir)), PreferenceModelReward)
    judge = make_reward("judge:whatever", judge_backend=FakeJudge([(0.0, 0.0)]), judge_question="Kind?")
    assert isinstance(judge, JudgeReward) and judge.question == "Kind?"
    with pytest.raises(CaiError, match="not understood"):
        make_reward("bleu")
    with pytest.raises(CaiError, match="names no path"):
        make_reward("rm:")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_reward_spec_parses_or_says_why(spec):
    try:
        kind, key, value = parse_reward_spec(spec)
    except CaiError as exc:
        assert "\n" not in str(exc)
        return
    assert kind in ("toy", "rm", "judge")
    assert key in ("token", "contains", "path", "model")
    if kind != "rm" or spec.strip().startswith("rm:"):
        assert spec.strip().endswith(value)


@pytest.mark.parametrize("spec, expected", [
    ("toy:token=fox", ("toy", "token", "fox")),
    ("toy:contains=a=b", ("toy", "contains", "a=b")),
    ("rm:runs/rm", ("rm", "path", "runs/rm")),
    ("./runs/rm", ("rm", "path", "./runs/rm")),
    ("judge:default", ("judge", "model", "default")),
    ("judge:org/model", ("judge", "model", "org/model")),
])
def test_parse_reward_spec_examples(spec, expected):
    assert parse_reward_spec(spec) == expected
