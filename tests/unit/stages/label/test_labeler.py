"""The labelling stage on fake judges (exact), the tiny model (real code paths) and a real server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.core.records import LabelRecord, Message, PreferenceRecord
from cai.stages.export import SFTRow
from cai.stages.label.labeler import LabelConfig, label_pairs, label_records, pair_principles, to_preference
from cai.stages.label.outputs import (
    Filters,
    build_outputs,
    human_preferences,
    label_stats,
    select_preferences,
)
from cai.stages.label.pairs import make_pair, pairs_from_completions, read_pairs_file
from tests.helpers.fakes import FakeJudge, constitution


def pairs(n: int = 5) -> list:
    out = []
    for i in range(n):
        good, bad = f"a good answer {i}", f"a poor answer {i}"
        a, b = (good, bad) if i % 2 else (bad, good)
        out.append(make_pair([Message(role="user", content=f"question {i}")], a, b, {"i": i}))
    return out


def test_labels_are_soft_debiased_and_name_the_better_answer():
    judge = FakeJudge(strength=2.0, bias=1.5)
    recs = list(label_records(pairs(5), judge, constitution(), LabelConfig(batch_size=2)))
    assert len(recs) == 5 and all(r.status == "ok" for r in recs)
    for r in recs:
        assert len(r.judgements) == 2 and {j.order for j in r.judgements} == {"ab", "ba"}
        pref = to_preference(r)
        assert "good" in pref.chosen[0].content and "poor" in pref.rejected[0].content
        assert pref.source == "ai" and 0.5 < pref.p_chosen < 1
        # with an A-bias the two orders disagree in strength; the average is between them
        assert pref.ai_label.p_chosen_as_a > pref.p_chosen > pref.ai_label.p_chosen_as_b
        assert pref.ai_label.position_consistent  # bias 1.5 < strength 2: both orders still agree
        assert abs(pref.ai_label.margin - (2 * pref.p_chosen - 1)) < 1e-9
        assert pref.provenance.constitution.name == "t" and pref.ai_label.feedback_model == "fake-judge"
    assert len(judge.score_calls) == 3  # batches of 2, 2, 1 pairs
    assert len(judge.score_calls[0]) == 4  # 2 pairs x 2 orders in one call


def test_strong_position_bias_is_reported_as_inconsistent():
    recs = list(label_records(pairs(2), FakeJudge(strength=1.0, bias=3.0), constitution()))
    for r in recs:
        assert r.position_consistent is False
        assert "good" in to_preference(r).chosen[0].content  # averaging both orders still picks right


def test_principles_are_drawn_per_pair_from_the_seed_and_asked():
    c = constitution()
    cfg = LabelConfig(principles_per_pair=3, seed=5)
    judge = FakeJudge()
    recs = list(label_records(pairs(4), judge, c, cfg))
    for p, r in zip(pairs(4), recs):
        assert r.principle_ids == [x.id for x in pair_principles(c, p.id, cfg)]
        assert set(r.used_principle_ids) == set(r.principle_ids)
        assert len(r.judgements) == 2 * len(set(r.principle_ids))  # a principle drawn twice is asked once
    asked = [c_["content"] for call in judge.score_calls for chat in call for c_ in chat
             if c_["role"] == "user"]
    assert any("Question" in t for t in asked)
    other = list(label_records(pairs(4), FakeJudge(), c, LabelConfig(principles_per_pair=3, seed=6)))
    assert [r.principle_ids for r in recs] != [r.principle_ids for r in other]
    assert {r.id for r in recs}.isdisjoint({r.id for r in other})


def test_done_ids_are_skipped_and_ids_are_deterministic():
    c = constitution()
    first = list(label_records(pairs(4), FakeJudge(), c))
    again = list(label_records(pairs(4), FakeJudge(), c))
    assert [r.id for r in first] == [r.id for r in again]
    done = {first[0].id, first[2].id}
    judge = FakeJudge()
    rest = list(label_records(pairs(4), judge, c, done=done.__contains__))
    assert [r.id for r in rest] == [first[1].id, first[3].id]
    # a repeated pair is labelled once
    assert len(list(label_records(pairs(2) + pairs(2), FakeJudge(), c))) == 2


def test_few_shot_examples_come_first():
    judge = FakeJudge()
    list(label_records(pairs(1), judge, constitution(examples=2)))
    chat = judge.score_calls[0][0]
    assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert chat[1]["content"].endswith("(A).") and chat[3]["content"].endswith("(B).")
    no_shots = FakeJudge()
    list(label_records(pairs(1), no_shots, constitution(examples=2), LabelConfig(few_shot=False)))
    assert len(no_shots.score_calls[0][0]) == 2


def test_fallback_to_generated_letters_when_scoring_is_unsupported():
    judge = FakeJudge(scoring=False)
    recs = list(label_records(pairs(4), judge, constitution(), LabelConfig(batch_size=2)))
    assert len(judge.score_calls) == 1  # tried once, then generated letters for the rest of the run
    assert all(r.status == "ok" for r in recs)
    for r in recs:
        assert all(j.method == "generated" and j.raw in ("A", "B") for j in r.judgements)
        pref = to_preference(r)
        assert "good" in pref.chosen[0].content and pref.p_chosen == 1.0
        assert pref.ai_label.method == "generated"
    chats, params = judge.generate_calls[0]
    assert params.temperature == 0.0
    assert chats[0][-1]["role"] == "user" and "only the letter" in chats[0][-1]["content"]


def test_a_parse_failure_is_kept_with_its_raw_text_and_counted():
    texts = iter(["A", "maybe both?", "B", "B"] * 10)
    judge = FakeJudge(scoring=False, letter=lambda chat: next(texts))
    recs = list(label_records(pairs(2), judge, constitution(), LabelConfig(batch_size=2)))
    failed = [r for r in recs if r.status == "failed"]
    assert len(failed) == 1
    bad = [j for j in failed[0].judgements if j.p_option_a is None]
    assert bad and bad[0].raw == "maybe both?" and "parse" in bad[0].error
    assert failed[0].p_a is None and to_preference(failed[0]) is None
    stats = label_stats(recs, *select_preferences(recs, Filters()))
    assert stats["failed_pairs"] == 1 and stats["reads"]["failed"] == 1 and stats["reads"]["generated"] == 4
    prefs = list(label_pairs(pairs(2), FakeJudge(scoring=False, letter=lambda chat: "no idea"),
                             constitution()))
    assert prefs == []


def test_chain_of_thought_scores_after_the_reasoning_and_clamps():
    judge = FakeJudge(strength=4.0, reasoning="Let me compare. B is rude.")
    cfg = LabelConfig(cot=True, cot_clamp=(0.4, 0.6), cot_max_new_tokens=32)
    recs = list(label_records(pairs(2), judge, constitution(), cfg))
    chats, params = judge.generate_calls[0]
    assert "step by step" in chats[0][-1]["content"] and params.max_new_tokens == 32
    scored = judge.score_calls[0][0]
    assert scored[-1] == {"role": "assistant",
                          "content": "Let me compare. B is rude.\n\nSo the better response is ("}
    for r in recs:
        assert all(j.reasoning == "Let me compare. B is rude." for j in r.judgements)
        assert all(0.4 <= j.p_option_a <= 0.6 for j in r.judgements)
        pref = to_preference(r)
        assert abs(pref.p_chosen - 0.6) < 1e-9 and pref.ai_label.cot and pref.ai_label.reasoning
    assert recs[0].id not in {r.id for r in label_records(pairs(2), FakeJudge(), constitution())}


def test_cot_fallback_asks_for_the_letter_after_the_reasoning():
    judge = FakeJudge(scoring=False)
    recs = list(label_records(pairs(1), judge, constitution(), LabelConfig(cot=True, cot_clamp=(0.0, 1.0))))
    letter_chats, _ = judge.generate_calls[1]
    assert [m["role"] for m in letter_chats[0]] == ["user", "assistant", "user"]
    assert to_preference(recs[0]).p_chosen == 1.0


def test_bad_config_is_a_one_line_error():
    with pytest.raises(CaiError, match="cot-clamp"):
        LabelConfig(cot_clamp=(0.6, 0.4))
    with pytest.raises(CaiError, match="principles-per-pair"):
        LabelConfig(principles_per_pair=0)
    with pytest.raises(CaiError, match="min-confidence"):
        Filters(min_confidence=0.3)


# ----------------------------------------------------------------------------- pairs and outputs


def _answers(prompt: str, texts: list[str]) -> list[SFTRow]:
    return [SFTRow.model_validate({"id": f"{prompt}{i}", "prompt": prompt, "completion": t}) for i, t in
            enumerate(texts)]


def test_candidates_pair_up_without_duplicates():
    rows = _answers("p1", ["x", "y", "x ", "z"]) + _answers("p2", ["same", "same"])
    got, report = pairs_from_completions(rows)
    assert [(p.answer_a, p.answer_b) for p in got] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert report.duplicate_answers == 2 and report.prompts_without_pair == 1 and report.pairs == 3
    assert got[0].metadata["answer_ids"] == ["p10", "p11"]
    disjoint, _ = pairs_from_completions(_answers("p", ["a", "b", "c", "d", "e"]), "disjoint")
    assert [(p.answer_a, p.answer_b) for p in disjoint] == [("a", "b"), ("c", "d")]


def test_responses_file_in_either_shape(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"prompt": "q", "completion": t}) + "\n" for t in ["a1", "a2"]))
    got, _ = read_pairs_file(answers)
    assert [(p.answer_a, p.answer_b) for p in got] == [("a1", "a2")]
    prefs = tmp_path / "pairs.jsonl"
    prefs.write_text(json.dumps({"prompt": "q", "chosen": "c", "rejected": "r"}) + "\n")
    got, _ = read_pairs_file(prefs)
    assert (got[0].answer_a, got[0].answer_b) == ("c", "r")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q"}) + "\n")
    with pytest.raises(CaiError, match="bad.jsonl:1"):
        read_pairs_file(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"prompt": "q", "chosen": "c", "rejected": "r"}) + "\n"
                      + '{"prompt": "q"}\n')
    with pytest.raises(CaiError, match="broken.jsonl:2"):
        read_pairs_file(broken)


def _write_labels(path: Path, recs: list[LabelRecord]) -> None:
    path.write_text("".join(r.model_dump_json() + "\n" for r in recs))


def test_outputs_are_rebuilt_from_labels_with_filters_and_humans(tmp_path):
    weak = FakeJudge(strength=0.3)
    biased = FakeJudge(strength=2.0, bias=3.0)
    c = constitution()
    recs = list(label_records(pairs(3), FakeJudge(strength=3.0), c)) + \
        list(label_records(pairs(6)[3:5], weak, c)) + list(label_records(pairs(6)[5:], biased, c))
    _write_labels(tmp_path / "labels.jsonl", recs)
    ids = [r.id for r in recs]
    human = human_preferences([PreferenceRecord.model_validate({"prompt": "h", "chosen": "c",
                                                                "rejected": "r"})], 0.5)
    stats = build_outputs(tmp_path, ids, Filters(), human)
    lines = (tmp_path / "preferences.jsonl").read_text().splitlines()
    assert len(lines) == 7 and stats["preferences"] == {"ai": 6, "human": 1, "total": 7}
    last = PreferenceRecord.model_validate_json(lines[-1])
    assert last.source == "human" and last.weight == 0.5 and last.ai_label is None
    first = PreferenceRecord.model_validate_json(lines[0])
    assert first.id == ids[0] and first.ai_label.label_id == ids[0]
    assert json.loads((tmp_path / "stats.json").read_text())["pairs"] == 6
    assert stats["position_consistency_rate"] == pytest.approx(5 / 6)

    before = (tmp_path / "labels.jsonl").read_bytes()
    stats = build_outputs(tmp_path, ids, Filters(min_confidence=0.6, drop_inconsistent=True))
    assert stats["dropped"] == {"failed": 0, "ties": 0, "low_confidence": 2, "inconsistent": 1}
    assert len((tmp_path / "preferences.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "labels.jsonl").read_bytes() == before  # the source is never rewritten
    again = build_outputs(tmp_path, ids, Filters(min_confidence=0.6, drop_inconsistent=True))
    assert again["preferences"] == stats["preferences"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_preferences_load_into_trl_columns(tmp_path):
    recs = list(label_records(pairs(2), FakeJudge(), constitution()))
    _write_labels(tmp_path / "labels.jsonl", recs)
    build_outputs(tmp_path, [r.id for r in recs], Filters())
    from cai.stages.export import to_dataset

    ds = to_dataset(prefs=tmp_path / "preferences.jsonl", test_fraction=0.0)
    row = ds["train_prefs"][0]
    assert row["source"] == "ai" and row["chosen"][0]["role"] == "assistant" and 0.5 <= row["p_chosen"] <= 1


def test_trl_takes_a_label_output_unchanged(tmp_path, tiny_model_dir):
    """preferences.jsonl rows as `cai label` writes them (ai_label, metadata, provenance and all) go through
    TRL's own chat-template helper and DPOTrainer's tokenization; the old `label` key made TRL refuse them."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import apply_chat_template, maybe_apply_chat_template

    recs = list(label_records(pairs(4), FakeJudge(), constitution()))
    _write_labels(tmp_path / "labels.jsonl", recs)
    build_outputs(tmp_path, [r.id for r in recs], Filters())
    rows = [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("ai_label" in r and "label" not in r for r in rows)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for row in rows:
        text = apply_chat_template(row, tok)
        assert row["chosen"][0]["content"] in text["chosen"] and text["prompt"].endswith("assistant\n")
        assert maybe_apply_chat_template(row, tok) == text
    old = {("label" if k == "ai_label" else k): v for k, v in rows[0].items()}
    with pytest.raises(KeyError, match="Invalid keys"):
        apply_chat_template(old, tok)  # why the column was renamed
    assert PreferenceRecord.model_validate(old).ai_label == PreferenceRecord.model_validate(rows[0]).ai_label

    cfg = DPOConfig(output_dir=str(tmp_path / "dpo"), report_to="none", max_steps=1, max_length=64,
                    per_device_train_batch_size=2, disable_tqdm=True, save_strategy="no", use_cpu=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=cfg,
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    tokenized = trainer.train_dataset
    ids = ["prompt_ids", "chosen_ids", "rejected_ids"]
    assert tokenized.num_rows == 4 and set(ids) <= set(tokenized.column_names)
    assert all(len(tokenized[i][c]) > 0 for i in range(4) for c in ids)


def test_human_pair_file_still_loads():
    rec = PreferenceRecord.model_validate({"prompt": [{"role": "user", "content": "q"}],
                                           "chosen": [{"role": "assistant", "content": "a"}],
                                           "rejected": [{"role": "assistant", "content": "b"}]})
    assert rec.source == "human" and rec.ai_label is None


def test_human_dev_pairs_load(shared_data):
    from cai.core.jsonl import read_records

    recs = read_records(shared_data / "hh_harmless_pairs_dev.jsonl", PreferenceRecord)
    assert len(recs) > 1000 and all(r.source == "human" for r in recs[:10])


# ----------------------------------------------------------------------------- tiny model


def test_tiny_model_labels_through_the_real_backend(tiny_model_dir):
    from cai.backends.hf.backend import HFBackend

    shared = HFBackend(str(tiny_model_dir), batch_size=4)
    naive = HFBackend(str(tiny_model_dir), batch_size=4, reuse_prefix=False, model_obj=shared.lm,
                      tokenizer=shared.tokenizer)
    c = constitution(examples=1)
    a = list(label_records(pairs(3), shared, c, LabelConfig(principles_per_pair=2)))
    b = list(label_records(pairs(3), naive, c, LabelConfig(principles_per_pair=2)))
    assert all(r.status == "ok" and r.judgements[0].method == "logprobs" for r in a)
    for x, y in zip(a, b):
        assert x.id == y.id and x.p_a == pytest.approx(y.p_a, abs=1e-4)
        assert all(j.logprobs[0] < 0 and j.logprobs[1] < 0 for j in x.judgements)


@pytest.mark.integration
def test_embedded_model_reads_the_options(shared_data):
    """The real labeler on two human pairs: nearly all its next-token mass is on A or B, both orders read."""
    from cai.backends.hf.backend import HFBackend
    from cai.constitution.load import load_constitution
    from cai.stages.label.pairs import load_pairs_for_audit

    be = HFBackend("default", batch_size=4)
    recs = list(label_records(load_pairs_for_audit(shared_data / "hh_harmless_pairs_dev.jsonl", 2), be,
                              load_constitution("harmless")))
    assert [r.status for r in recs] == ["ok", "ok"]
    for r in recs:
        for j in r.judgements:
            assert math.exp(j.logprobs[0]) + math.exp(j.logprobs[1]) > 0.8
        assert to_preference(r).ai_label.method == "logprobs"
