"""The revision-vs-answer judge of ``sft_source: best``: verdicts, signal, resume, and what derive picks."""

from __future__ import annotations

import json

import pytest

from cai.constitution.schema import Constitution, Principle
from cai.core.errors import CaiError
from cai.core.jsonl import read_records
from cai.core.records import Message, Provenance, RevisionRecord, RevisionRound, SFTRecord
from cai.stages.critique.best import (
    JUDGEMENTS_FILE,
    has_signal,
    judge_best,
    judge_candidates,
    judge_revisions,
    matching_judgements,
    read_judgements,
)
from cai.stages.critique.outputs import REVISIONS_FILE, SFT_FILE, derive_outputs, format_summary, regate
from cai.stages.label.feedback import FeedbackReader
from tests.helpers.fakes import FakeJudge

HARM = Principle(id="harm", critique="Point out anything harmful in the response.",
                 revision="Rewrite the response so it does no harm.",
                 comparison="Which response is less harmful?")
CONST = Constitution(name="t", version="1", system_prompt="Be good.", principles=[HARM])


def trace(i: int, revision: str | None = None, answer: str | None = None, finish: str = "stop",
          answer_finish: str = "stop") -> RevisionRecord:
    """A red-team trace by hand: FakeJudge prefers the text that says 'good': the revision for even i."""
    if revision is None:
        revision = (f"A good locksmith can open lock {i} for you safely." if i % 2 == 0
                    else f"Open lock {i} fast with a bump key.")
    if answer is None and i % 2:
        answer = f"A good rake and a tension wrench pick lock {i}."
    return RevisionRecord(
        id=f"t{i}", prompt_id=f"p{i}", prompt=[Message(role="user", content=f"How do I open lock {i}?")],
        system_prompt="Be good.", answer=answer or f"Pick lock {i} with a rake and a tension wrench.",
        answer_finish_reason=answer_finish,
        rounds=[RevisionRound(index=1, principle_id="harm", critique_request=HARM.critique,
                              critique=f"It helps someone break into lock {i}.",
                              revision_request=HARM.revision,
                              revision=revision, revision_raw=revision, revision_finish_reason=finish)],
        provenance=Provenance(constitution=CONST.ref(), principle_ids=["harm"]),
    )


def write_traces(run_dir, recs) -> None:
    (run_dir / REVISIONS_FILE).write_text("".join(r.model_dump_json() + "\n" for r in recs))


def test_candidates_need_a_clean_revision_and_a_clean_answer():
    recs = [regate(r) for r in (trace(0), trace(1, finish="length"), trace(2, answer_finish="length"),
                                trace(3, revision="This is not kind. " * 8))]
    assert [c.trace_id for c in judge_candidates(recs)] == ["t0"]
    assert regate(trace(3, revision="This is not kind. " * 8)).rounds[0].flags == ["repetition"]


def derive_best(out, judge):
    """derive_outputs with the best source, its verdicts from judge_best (which asks only what is missing)."""
    judged, verdict = judge_best(out, None, FeedbackReader(judge, CONST), CONST)
    return derive_outputs(out, sft_source="best", judged=judged, judge_signal=verdict["signal"],
                          judge=verdict, constitution=CONST)


def test_a_judge_with_signal_decides(tmp_path):
    recs = [trace(i) for i in range(12)]
    judge = FakeJudge(strength=2.0)
    p = judge_revisions(recs, FeedbackReader(judge, CONST), CONST, tmp_path / JUDGEMENTS_FILE, batch_size=5)
    assert sorted(p) == sorted(r.id for r in recs)
    assert all((p[f"t{i}"] > 0.5) == (i % 2 == 0) for i in range(12))
    assert len(judge.score_calls) == 3 and len(judge.score_calls[0]) == 10  # 5 pairs x 2 orders per call
    saved = read_judgements(tmp_path / JUDGEMENTS_FILE)
    assert len(saved) == 12 and all(len(r.judgements) == 2 and r.judgements[0].logprobs for r in saved)
    assert saved[0].answer_a[0].content == recs[0].rounds[0].revision  # answer_a is the revision
    assert saved[0].metadata["trace_id"] == "t0" and saved[0].principle_ids == ["harm"]
    verdict = has_signal(saved)
    assert verdict.signal and verdict.figures["consistency"] == 1.0 and verdict.figures["judged"] == 12

    write_traces(tmp_path, recs)
    stats = derive_best(tmp_path, judge)
    rows = {r.source_id: r for r in read_records(tmp_path / SFT_FILE, SFTRecord)}
    for i in range(12):
        row = rows[f"t{i}"]
        assert row.prompt == recs[i].prompt  # the system prompt is never in the SFT prompt
        if i % 2 == 0:
            assert row.round == 1 and row.completion[0].content == recs[i].rounds[0].revision
            assert row.metadata["why"] == "judged better"
        else:
            assert row.round == 0 and row.completion[0].content == recs[i].answer
            assert row.metadata["sft_source"] == "initial" and row.metadata["why"] == "judged not better"
    assert stats["sft_from"] == {"revision": 6, "initial": 6}
    assert stats["sft_why"] == {"judged better": 6, "judged not better": 6}
    assert stats["judge"]["signal"] is True and stats["judge"]["figures"]["judged"] == 12
    assert json.loads((tmp_path / "stats.json").read_text())["judge"] == stats["judge"]
    assert "judge (revision vs initial answer): signal yes" in format_summary(stats)


def test_a_judge_without_signal_is_ignored(tmp_path):
    recs = [trace(i) for i in range(12)]
    judge = FakeJudge(strength=0.0, bias=3.0)  # says (A) whatever it is shown
    p = judge_revisions(recs, FeedbackReader(judge, CONST), CONST, tmp_path / JUDGEMENTS_FILE)
    assert all(abs(v - 0.5) < 1e-9 for v in p.values())
    write_traces(tmp_path, recs)
    stats = derive_best(tmp_path, judge)
    assert stats["judge"]["signal"] is False
    assert any(r.startswith("position consistency 0.0%") for r in stats["judge"]["reasons"])
    assert stats["sft_from"] == {"revision": 12, "initial": 0}
    assert stats["sft_why"] == {"clean revision, judge has no signal": 12}
    assert "signal no (position consistency 0.0%" in format_summary(stats)


def test_too_few_judged_pairs_have_no_signal(tmp_path):
    recs = [trace(i) for i in range(4)]
    judge_revisions(recs, FeedbackReader(FakeJudge(strength=2.0), CONST), CONST, tmp_path / JUDGEMENTS_FILE)
    write_traces(tmp_path, recs)
    stats = derive_best(tmp_path, FakeJudge(strength=2.0))
    assert stats["judge"]["reasons"] == ["only 4 judged pair(s), fewer than 10"]
    assert stats["sft_from"] == {"revision": 4, "initial": 0}
    # a caller that vouches for the judge (judge_signal=True) gets its verdicts used
    judged, judge = judge_best(tmp_path, None, FeedbackReader(FakeJudge(strength=2.0), CONST), CONST)
    stats = derive_outputs(tmp_path, sft_source="best", judged=judged, judge_signal=True, judge=judge)
    assert stats["sft_from"] == {"revision": 2, "initial": 2} and stats["judge"]["signal"] is False


def test_judgements_resume(tmp_path):
    recs = [trace(i) for i in range(6)]
    path = tmp_path / JUDGEMENTS_FILE
    judge = FakeJudge(strength=2.0)
    first = judge_revisions(recs, FeedbackReader(judge, CONST), CONST, path)
    n_calls = len(judge.score_calls)
    again = judge_revisions(recs, FeedbackReader(judge, CONST), CONST, path)
    assert again == first and len(judge.score_calls) == n_calls  # nothing asked twice
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # lose the last judgement
    judge.score_calls.clear()
    assert judge_revisions(recs, FeedbackReader(judge, CONST), CONST, path) == first
    assert [len(c) for c in judge.score_calls] == [2]  # one pair, both orders
    assert [r.id for r in read_judgements(path)] == [json.loads(x)["id"] for x in lines]
    # another judge gets its own ids: the first judge's reads are not reused for it
    other = FakeJudge(strength=1.0)
    other.model = "other-judge"
    judge_revisions(recs, FeedbackReader(other, CONST), CONST, path)
    assert len(other.score_calls) == 1 and len(read_judgements(path)) == 12


def test_a_changed_revision_is_judged_again(tmp_path):
    path = tmp_path / JUDGEMENTS_FILE
    judge_revisions([trace(0)], FeedbackReader(FakeJudge(), CONST), CONST, path)
    changed = trace(0, revision="A good friend with a key can open lock 0.")
    assert matching_judgements(path, [regate(changed)]) == {}
    judge_revisions([changed], FeedbackReader(FakeJudge(), CONST), CONST, path)
    assert list(matching_judgements(path, [regate(changed)])) == ["t0"]


def test_best_keeps_gates_first(tmp_path):
    recs = [trace(0, finish="length"), trace(1, answer_finish="length"),
            trace(2, finish="length", answer_finish="length")]
    judge = FakeJudge(strength=2.0)
    assert judge_revisions(recs, FeedbackReader(judge, CONST), CONST, tmp_path / JUDGEMENTS_FILE) == {}
    assert judge.score_calls == []  # nothing to compare
    write_traces(tmp_path, recs)
    stats = derive_outputs(tmp_path, sft_source="best")
    rows = {r.source_id: r for r in read_records(tmp_path / SFT_FILE, SFTRecord)}
    assert rows["t0"].round == 0 and rows["t0"].metadata["why"] == "revision flagged"
    assert rows["t1"].round == 1 and rows["t1"].metadata["why"] == "answer flagged"
    assert "t2" not in rows
    assert stats["left_out_why"] == {"answer: truncated": 1, "revision: truncated": 1}


def test_an_unknown_principle_is_a_one_line_error(tmp_path):
    rec = trace(0)
    rec.rounds[0].principle_id = "gone"
    with pytest.raises(CaiError, match="principle_id: 'gone'"):
        judge_revisions([rec], FeedbackReader(FakeJudge(), CONST), CONST, tmp_path / JUDGEMENTS_FILE)
