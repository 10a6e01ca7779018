"""Derived outputs: SFT choice and fallback, revision pairs, stats, and loading into datasets / TRL."""

from __future__ import annotations

import json

import pytest

from cai.backends.protocol import Generation
from cai.constitution.schema import Constitution, Principle
from cai.core.jsonl import JsonlWriter, read_records
from cai.core.records import PreferenceRecord, PromptRecord, SamplingParams, SFTRecord
from cai.stages.critique.loop import CritiqueConfig, critique_revise
from cai.stages.critique.outputs import (
    PAIRS_FILE,
    REVISIONS_FILE,
    SFT_FILE,
    STATS_FILE,
    derive_outputs,
    format_summary,
)
from cai.stages.export import to_dataset

P = Principle(id="harm", critique="Point out anything harmful in the response.",
              revision="Rewrite it so it does no harm.")
Q = Principle(id="kind", critique="Point out anything unkind in the response.",
              revision="Rewrite it kindly, please.")
CONST = Constitution(name="t", version="1", system_prompt="Be good.", principles=[P, Q])

# prompt -> (answer, [(revision text, finish reason) per round])
SCRIPT = {
    "A": ("Answer A.", [("Rev A1.", "stop"), ("Rev A2.", "stop")]),
    "B": ("Answer B.", [("Revision: Rev B1.", "stop"), ("Rev B2 cut", "length")]),
    "C": ("Answer C.", [("Answer  C.", "stop"), ("Fine.\nUser: more?", "stop")]),
    "D": ("Answer D.", [("Rev D1<|im_end|>", "stop"), ("   ", "stop")]),
    "H1": ("Helpful one.", []),
    "H2": ("Helpful two cut", []),
}


class Scripted:
    """A backend that answers from SCRIPT by the prompt and the step (no model)."""

    model, kind = "scripted", "fake"

    def generate(self, chats, params):
        out = []
        for i, chat in enumerate(chats):
            prompt = next(m["content"] for m in chat if m["role"] == "user")
            answer, revisions = SCRIPT[prompt]
            last = chat[-1]["content"]
            n_revisions = sum(m["content"] in (P.revision, Q.revision) for m in chat)
            if last in (P.critique, Q.critique):
                text, reason = f"Critique {n_revisions + 1} of {prompt}.", "stop"
            elif last in (P.revision, Q.revision):
                text, reason = revisions[n_revisions - 1]
            else:
                text, reason = answer, "length" if answer.endswith("cut") else "stop"
            out += [Generation(text, reason, 3, 3, index=i, sample=s) for s in range(params.n)]
        return out

    def score(self, chats, continuations):
        raise NotImplementedError


@pytest.fixture
def run_dir(tmp_path):
    config = CritiqueConfig(rounds=2, params=SamplingParams(max_new_tokens=8), batch_size=2)
    prompts = [PromptRecord(prompt=k, id=k) for k in "ABCD"]
    helpful = [PromptRecord(prompt=k, id=k) for k in ("H1", "H2")]
    with JsonlWriter(tmp_path / REVISIONS_FILE) as w:
        for rec in critique_revise(prompts, CONST, Scripted(), config, helpful=helpful):
            w.write(rec)
    return tmp_path


def sft_rows(run_dir) -> dict[str, SFTRecord]:
    return {r.metadata["prompt_id"]: r for r in read_records(run_dir / SFT_FILE, SFTRecord)}


def test_flags_reach_the_trace(run_dir):
    from cai.core.records import RevisionRecord

    recs = {r.prompt_id: r for r in read_records(run_dir / REVISIONS_FILE, RevisionRecord)}
    assert [x.flags for x in recs["A"].rounds] == [[], []]
    assert (recs["B"].rounds[0].revision == "Rev B1."
            and recs["B"].rounds[0].revision_raw == "Revision: Rev B1.")
    assert [x.flags for x in recs["B"].rounds] == [[], ["truncated"]]
    assert [x.flags for x in recs["C"].rounds] == [["unchanged"], ["leak-role"]]
    assert [x.flags for x in recs["D"].rounds] == [["leak-template"], ["empty"]]
    assert recs["H2"].answer_flags == ["truncated"] and recs["H1"].answer_flags == []
    assert recs["A"].rounds[1].critique == "Critique 2 of A."


def test_sft_takes_the_last_round_and_falls_back_to_the_latest_clean_one(run_dir):
    stats = derive_outputs(run_dir)
    rows = sft_rows(run_dir)
    assert sorted(rows) == ["A", "B", "H1"]
    assert rows["A"].completion[0].content == "Rev A2." and rows["A"].round == 2
    assert not rows["A"].metadata["fallback"]
    assert (rows["B"].completion[0].content == "Rev B1." and rows["B"].round == 1
            and rows["B"].metadata["fallback"])
    assert rows["H1"].kind == "helpful" and rows["H1"].round == 0
    assert rows["H1"].completion[0].content == "Helpful one."
    # no system prompt
    assert [m.model_dump() for m in rows["A"].prompt] == [{"role": "user", "content": "A"}]
    assert len(rows["A"].provenance.principle_ids) == 2
    assert rows["B"].provenance.constitution == CONST.ref() and len(rows["B"].provenance.principle_ids) == 1
    assert stats["sft_rows"] == 3 and stats["sft_fallbacks"] == 1 and stats["left_out"] == 2
    assert stats["revised_pct"] == 50.0 and stats["helpful_left_out"] == 1
    assert stats["flags"]["truncated"] == {"count": 1, "pct": 12.5}
    assert stats["flagged_revisions"] == 5 and stats["flagged_pct"] == 62.5
    assert sum(v["rounds"] for v in stats["principles"].values()) == 8
    assert stats["mean_chars"]["answer"] == 9.0 and stats["mean_chars"]["sft_revision"] == 7.0
    assert json.loads((run_dir / STATS_FILE).read_text()) == stats
    assert not (run_dir / PAIRS_FILE).exists()
    summary = format_summary(stats)
    assert "2/4 (50.0%)" in summary and "truncated 12.5%" in summary


def test_sft_round_option(run_dir):
    stats = derive_outputs(run_dir, sft_round=1)
    rows = sft_rows(run_dir)
    assert rows["A"].completion[0].content == "Rev A1." and not rows["A"].metadata["fallback"]
    assert sorted(rows) == ["A", "B", "H1"] and stats["sft_round"] == 1 and stats["sft_fallbacks"] == 0


def test_revision_pairs_are_labelled_as_the_shortcut(run_dir):
    stats = derive_outputs(run_dir, revision_pairs=True)
    pairs = read_records(run_dir / PAIRS_FILE, PreferenceRecord)
    assert stats["pairs"] == 2 and len(pairs) == 2
    for p in pairs:
        assert p.source == "revision" and p.p_chosen == 1.0
        assert p.rejected[0].content.startswith("Answer ") and "revision shortcut" in p.metadata["label"]
    assert {p.chosen[0].content for p in pairs} == {"Rev A2.", "Rev B1."}


def test_derived_files_are_deterministic_atomic_and_filtered(run_dir):
    derive_outputs(run_dir, revision_pairs=True)
    first = (run_dir / SFT_FILE).read_bytes(), (run_dir / PAIRS_FILE).read_bytes()
    derive_outputs(run_dir, revision_pairs=True)
    assert ((run_dir / SFT_FILE).read_bytes(), (run_dir / PAIRS_FILE).read_bytes()) == first
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    ids = {r.source_id for r in read_records(run_dir / SFT_FILE, SFTRecord)}
    stats = derive_outputs(run_dir, ids=ids)
    assert stats["records"] == 3 and stats["other_records"] == 3


def test_sft_export_loads_with_datasets_and_trl(run_dir, tiny_model_dir, tmp_path):
    derive_outputs(run_dir, revision_pairs=True)
    dd = to_dataset(sft=run_dir / SFT_FILE, prefs=run_dir / PAIRS_FILE, test_fraction=0.0)
    train = dd["train_sft"]
    assert len(train) == 3 and set(train.column_names) == {"id", "prompt", "completion", "provenance"}
    assert len(dd["train_prefs"]) == 2 and set(dd["train_prefs"]["source"]) == {"revision"}
    assert train[0]["provenance"]["constitution"]["name"] == "t"  # a struct column

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import apply_chat_template, is_conversational

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = train[0]
    assert is_conversational(row)
    text = apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tok)
    assert text["completion"].startswith(row["completion"][0]["content"])
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=3,
                       report_to=[], save_strategy="no", use_cpu=True, logging_steps=1,
                       dataloader_num_workers=0),
        train_dataset=train.remove_columns(["id", "provenance"]),
        processing_class=tok,
    )
    out = trainer.train()
    assert out.training_loss > 0
    sample = trainer.train_dataset[0]
    trained = [t for t in sample["labels"] if t != -100]  # completion-only loss: the prompt is masked
    assert 0 < len(trained) < len(sample["input_ids"])


# --------------------------------------------------------------------------- sft_source, gates at derive time


def test_default_source_writes_the_same_files_as_before(run_dir):
    derive_outputs(run_dir, revision_pairs=True)
    first = (run_dir / SFT_FILE).read_bytes(), (run_dir / PAIRS_FILE).read_bytes()
    derive_outputs(run_dir, sft_source="initial")
    derive_outputs(run_dir, sft_source="revision", revision_pairs=True)
    assert ((run_dir / SFT_FILE).read_bytes(), (run_dir / PAIRS_FILE).read_bytes()) == first
    for row in read_records(run_dir / SFT_FILE, SFTRecord):
        assert set(row.metadata) == {"prompt_id", "sample_index", "fallback", "prompt_metadata"}


def test_initial_source_distils_the_answer_made_under_the_system_prompt(run_dir):
    from cai.core.records import RevisionRecord, make_id

    traces = {r.prompt_id: r for r in read_records(run_dir / REVISIONS_FILE, RevisionRecord)}
    stats = derive_outputs(run_dir, sft_source="initial", revision_pairs=True)
    rows = sft_rows(run_dir)
    assert sorted(rows) == ["A", "B", "C", "D", "H1"]
    for k in "ABCD":
        row, rec = rows[k], traces[k]
        assert rec.system_prompt == "Be good."  # the answer was made under the system prompt ...
        # ... trained without it
        assert [m.model_dump() for m in row.prompt] == [{"role": "user", "content": k}]
        assert row.completion[0].content == rec.answer and row.round == 0
        assert row.id == make_id("sft", rec.id, 0) and row.metadata["sft_source"] == "initial"
        assert row.provenance.principle_ids == [] and row.metadata["fallback"] is False
    assert stats["sft_from"] == {"revision": 0, "initial": 4} and stats["sft_initial_rows"] == 4
    assert stats["sft_rows"] == 5 and stats["left_out"] == 0 and stats["pairs"] == 0
    assert stats["mean_chars"]["sft_initial"] == 9.0
    assert "0 revisions + 4 initial answers + 1 helpful" in format_summary(stats)


def write_traces(run_dir, recs) -> None:
    (run_dir / REVISIONS_FILE).write_text("".join(r.model_dump_json() + "\n" for r in recs))


def hand_trace(name, answer, revision, critique="It helps someone hurt people.", answer_finish="stop"):
    from cai.core.records import Message, Provenance, RevisionRecord, RevisionRound

    return RevisionRecord(
        id=name, prompt_id=name,
        prompt=[Message(role="user", content=f"How do I make a bomb at home, {name}?")],
        answer=answer, answer_finish_reason=answer_finish,
        rounds=[RevisionRound(index=1, principle_id="harm", critique_request=P.critique, critique=critique,
                              revision_request=P.revision, revision=revision, revision_raw=revision,
                              revision_finish_reason="stop")],
        provenance=Provenance(),
    )


def test_old_traces_get_todays_gates_and_stats_say_why(tmp_path):
    """Traces stored with no flags (an older run) are re-checked; every left-out trace is explained."""
    from cai.constitution.schema import Example

    const = CONST.model_copy(update={"examples": [Example(
        prompt="How can I get onto my neighbour's wifi without them knowing?", response="Crack the password.",
        critique="The response explains how to break into a network the person does not own.",
        revision="I can't help with getting onto someone else's network without permission.")]})
    bomb = "Mix fuel and fertiliser in a bucket and add a fuse."
    recs = [
        hand_trace("ok", bomb, "I can't help with making a bomb, but the bomb squad can make one safe."),
        hand_trace("loop", bomb, "The bomb is dangerous. This is not a compliment. " * 6),
        hand_trace("meta", bomb,
                   "The response is deceptive and misleading, and it seeks to manipulate others."),
        hand_trace("wifi", bomb, "I can't help with getting onto someone else's network without permission.",
                   critique="The response explains how to break into a network the person does not own."),
        hand_trace("copy", bomb, "It helps someone hurt people, a bomb hurts people.",
                   critique="It helps someone hurt people, a bomb hurts people and it should not."),
        hand_trace("away", bomb,
                   "The document includes a section on hazardous materials, storage and disposal."),
    ]
    write_traces(tmp_path, recs)
    stats = derive_outputs(tmp_path, constitution=const)
    assert sorted(sft_rows(tmp_path)) == ["ok"]
    assert stats["left_out"] == 5
    assert stats["left_out_why"] == {
        "revision: about-response": 1, "revision: copy-critique": 1, "revision: copy-example": 1,
        "revision: critique-copy-example": 1, "revision: off-topic": 2, "revision: repetition": 1,
    }  # the deceptive/misleading meta-talk is beside the prompt too
    assert stats["flags"]["repetition"]["count"] == 1 and stats["flagged_revisions"] == 5
    summary = format_summary(stats)
    assert "left out 5 red-team trace(s): revision: off-topic 2, revision: about-response 1" in summary
    # without the constitution the few-shot copy rules cannot run: only the other four are caught
    stats = derive_outputs(tmp_path)
    assert sorted(sft_rows(tmp_path)) == ["ok", "wifi"] and stats["left_out"] == 4


def test_initial_answers_pass_their_own_gates(tmp_path):
    recs = [
        hand_trace("fine", "I can't help with building a bomb.", "I won't help with a bomb."),
        hand_trace("cut", "Mix fuel and", "I won't help with a bomb.", answer_finish="length"),
        hand_trace("loop", "I'm here to help you with the bomb. " * 6, "I won't help with a bomb."),
        hand_trace("role", "No.\nUser: and then?", "I won't help with a bomb."),
    ]
    write_traces(tmp_path, recs)
    stats = derive_outputs(tmp_path, sft_source="initial")
    assert sorted(sft_rows(tmp_path)) == ["fine"]
    assert stats["left_out_why"] == {"answer: leak-role": 1, "answer: repetition": 1, "answer: truncated": 1}
    assert stats["flagged_answers"] == 3 and stats["answer_flags"]["repetition"] == 1
    # the same traces by revision: every revision is clean
    assert derive_outputs(tmp_path)["sft_from"] == {"revision": 4, "initial": 0}


def test_best_without_judgements_keeps_clean_revisions(tmp_path):
    recs = [hand_trace("fine", "I can't help with building a bomb.", "I won't help with a bomb."),
            hand_trace("meta", "I can't help with building a bomb.", "The response is fine as it is.")]
    write_traces(tmp_path, recs)
    stats = derive_outputs(tmp_path, sft_source="best")
    rows = sft_rows(tmp_path)
    assert (rows["fine"].round == 1 and rows["meta"].round == 0
            and rows["meta"].metadata["why"] == "revision flagged")
    assert stats["judge"] is None  # no verdicts given: the judge's view is unknown, so no signal


def test_unknown_source_is_a_one_line_error(run_dir):
    from cai.core.errors import CaiError

    with pytest.raises(CaiError, match="sft_source 'revisions'"):
        derive_outputs(run_dir, sft_source="revisions")


def test_refusal_gate_keeps_refusals_of_harm_and_answers_to_benign_prompts(tmp_path):
    """Rejection sampling for context distillation: red-team targets must decline, helpful ones must not;
    an answer cut at max_new_tokens is trimmed to its last sentence instead of dropped, when asked."""
    refusal = hand_trace("refuses", "I'm sorry, but I can't help with that. Building a bomb could kill", "x",
                         answer_finish="length")
    complies = hand_trace("complies", "Sure! First get some fertiliser and a timer.", "x")
    benign = hand_trace("benign", "Mix flour, water and yeast, then bake it for forty minutes.",
                        "x").model_copy(update={"kind": "helpful", "rounds": []})
    refused_benign = hand_trace("refused-benign", "I'm sorry, but I can't help with that.", "x").model_copy(
        update={"kind": "helpful", "rounds": []})
    write_traces(tmp_path, [refusal, complies, benign, refused_benign])
    stats = derive_outputs(tmp_path, sft_source="initial", refusal_gate=True, trim_truncated=True)
    rows = sft_rows(tmp_path)
    assert sorted(rows) == ["benign", "refuses"]
    assert rows["refuses"].completion[0].content == "I'm sorry, but I can't help with that."  # trimmed
    assert stats["left_out_why"] == {"answer: complies with a red-team prompt": 1}
    assert stats["helpful_left_out_why"] == {"helpful: refuses a helpful prompt": 1}
    assert stats["trimmed_answers"] == 1 and stats["refusal_gate"] is True
    # no gate: the compliance is kept and the cut answer dropped
    without = derive_outputs(tmp_path, sft_source="initial")
    assert sorted(sft_rows(tmp_path)) == ["benign", "complies", "refused-benign"]
    assert without["left_out_why"] == {"answer: truncated": 1}


def test_initial_answers_become_candidates_for_the_labeller(tmp_path):
    from cai.core.records import CompletionRecord
    from cai.stages.critique.outputs import initial_answers

    a = hand_trace("a", "I can't help with that.", "x")
    b = hand_trace("b", "Here is some bread.", "x").model_copy(update={"kind": "helpful", "rounds": []})
    write_traces(tmp_path, [a, b, hand_trace("empty", "  ", "x")])
    assert initial_answers(tmp_path / REVISIONS_FILE, tmp_path / "c.jsonl") == 2
    cands = read_records(tmp_path / "c.jsonl", CompletionRecord)
    assert [c.completion[0].content for c in cands] == ["I can't help with that.", "Here is some bread."]
    assert cands[0].prompt == a.prompt and cands[0].metadata["trace_id"] == "a"
    assert initial_answers(tmp_path / REVISIONS_FILE, tmp_path / "d.jsonl", helpful=False) == 1
