"""`evaluate` end to end on tiny random models: every output file, every figure, and resume without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cai.core.jsonl import read_records
from cai.core.records import CompletionRecord
from cai.eval.run import evaluate
from cai.eval.schema import EvalJudgement, EvalSummary
from cai.eval.spec import EvalModel, EvalSpec
from tests.helpers.data import BENIGN, LOOKALIKE, REDTEAM, write_jsonl
from tests.helpers.tiny import build_tiny_model, build_tiny_rm


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, Path]:
    """Two different tiny policies and a tiny preference model."""
    other = build_tiny_model(tmp_path_factory.mktemp("tiny-other"), seed=3)
    rm = build_tiny_rm(tmp_path_factory.mktemp("tiny-rm"))
    return tiny_model_dir, other, rm


@pytest.fixture
def prompt_files(tmp_path) -> dict[str, Path]:
    return {"redteam": write_jsonl(tmp_path / "red.jsonl", REDTEAM),
            "lookalike": write_jsonl(tmp_path / "look.jsonl", LOOKALIKE),
            "benign": write_jsonl(tmp_path / "benign.jsonl", BENIGN)}


def make_spec(tiny_pair, files, **extra) -> EvalSpec:
    base, other, rm = tiny_pair
    return EvalSpec(models=[EvalModel(name="base", model=str(base)), EvalModel(name="dpo", model=str(other))],
                    feedback_model=str(base), preference_model=rm, max_new_tokens=6, **files, **extra)


def test_evaluate_writes_every_output_and_figure(tmp_path, tiny_pair, prompt_files):
    out = tmp_path / "eval"
    summary = evaluate(make_spec(tiny_pair, prompt_files), out)
    assert {p.name for p in out.iterdir()} >= {"eval.json", "report.md", "report.html", "answers", "judgements"}
    again = EvalSummary.model_validate_json((out / "eval.json").read_text())
    assert again.models[1].name == "dpo" and again == summary
    base, dpo = summary.models
    for m in (base, dpo):
        assert m.harm.refusal.n == 3 and m.harm.harmful.n + m.harm.judge_failures == 3
        assert 0 <= m.harm.mean_p_harmful <= 1
        assert m.over_refusal.safe_refusal.n == 2 and m.over_refusal.unsafe_refusal.n == 1
        assert m.hacking.boilerplate_rate is not None and m.hacking.pm_judge_disagreement is not None
        assert m.mean_answer_chars >= 0
    assert base.helpfulness is None and base.hacking.kl_from_reference is None  # the baseline is the reference
    assert dpo.helpfulness.baseline == "base" and dpo.helpfulness.win_rate.n + dpo.helpfulness.judge_failures == 3
    assert dpo.hacking.kl_from_reference is not None
    # answers: one record per distinct prompt (9 prompts) per model; judgements carry provenance
    answers = read_records(out / "answers" / "dpo.jsonl", CompletionRecord)
    assert len(answers) == 9 and len({a.id for a in answers}) == 9
    judged = read_records(out / "judgements" / "dpo.jsonl", EvalJudgement)
    kinds = {j.kind for j in judged}
    assert kinds == {"harm-rubric", "helpfulness", "logprob", "pm-score"}
    rubric = [j for j in judged if j.kind == "harm-rubric"]
    assert len(rubric) == 3 and all(len(j.reads) == 2 and j.provenance.constitution.name == "harmless" for j in rubric)
    crime = next(j for j in rubric if j.prompt_id == answers[0].prompt_id)
    assert crime.provenance.principle_ids == ["crime"]  # the prompt's category picks the principle
    assert sum(j.kind == "logprob" for j in judged) == 18  # under the policy and under the reference
    md = (out / "report.md").read_text()
    assert "| figure | base | dpo |" in md


def test_rerun_resumes_without_loading_any_model(tmp_path, tiny_pair, prompt_files, monkeypatch):
    out = tmp_path / "eval"
    spec = make_spec(tiny_pair, prompt_files, judge="pairwise")
    first = evaluate(spec, out)
    sizes = {p.name: p.stat().st_size for p in (out / "judgements").iterdir()}

    def no_model(*a, **k):
        raise AssertionError("a finished evaluation loaded a model again")

    monkeypatch.setattr("cai.backends.make_backend", no_model)
    monkeypatch.setattr("cai.scoring.reward_scorers.PreferenceModelReward", no_model)
    second = evaluate(spec, out)
    assert [m.model_dump(exclude={"answers"}) for m in second.models] == \
           [m.model_dump(exclude={"answers"}) for m in first.models]
    assert sizes == {p.name: p.stat().st_size for p in (out / "judgements").iterdir()}
    pairwise = [j for j in read_records(out / "judgements" / "base.jsonl", EvalJudgement) if j.kind == "harm-pairwise"]
    assert len(pairwise) == 3 and all({r["order"] for r in j.reads} == {"ab", "ba"} for j in pairwise)


def test_a_partial_run_finishes_only_what_is_missing(tmp_path, tiny_pair, prompt_files):
    out = tmp_path / "eval"
    spec = make_spec(tiny_pair, prompt_files)
    evaluate(spec, out)
    path = out / "judgements" / "base.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # lose the last judgement, as a crash would
    answers = out / "answers" / "dpo.jsonl"
    alines = answers.read_text().splitlines(keepends=True)
    answers.write_text("".join(alines[:-2]))
    evaluate(spec, out)
    assert len(path.read_text().splitlines()) == len(lines)
    assert len(answers.read_text().splitlines()) == len(alines)


def test_one_model_and_one_set(tmp_path, tiny_model_dir, prompt_files):
    spec = EvalSpec(models=[EvalModel(name="solo", model=str(tiny_model_dir))], feedback_model=str(tiny_model_dir),
                    lookalike=prompt_files["lookalike"], limit=1, max_new_tokens=4)
    s = evaluate(spec, tmp_path / "solo")
    (m,) = s.models
    assert m.harm is None and m.helpfulness is None and m.hacking.kl_from_reference is None
    assert m.over_refusal.safe_refusal.n == 1 and m.over_refusal.unsafe_refusal.n == 1
