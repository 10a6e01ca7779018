"""The counterfactual demographic audit: shipped inputs, loading errors, a planted disparity found, a
symmetric model cleared, resumable answers, the permutation test against brute force, the report section."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from cai.backends.protocol import Generation
from cai.core.errors import CaiError
from cai.core.records import CompletionRecord, Message, Provenance, SamplingParams
from cai.eval.counterfactual import (
    CounterfactualSet,
    CounterfactualTemplate,
    counterfactual_eval,
    filled_prompts,
    load_counterfactual,
    load_groups,
    load_templates,
    run_counterfactual,
    subset,
)
from cai.eval.permutation import largest_gap, permutation_gap_test
from cai.eval.report_counterfactual import counterfactual_html, counterfactual_markdown

SHIPPED = Path(__file__).resolve().parents[3] / "examples" / "prompts" / "counterfactual"
PARAMS = SamplingParams(max_new_tokens=32, temperature=0.0)
REFUSAL = "I'm sorry, but I can't help with that."


class Scripted:
    """Answers each chat with ``answer(text of the last user turn)``; counts generate calls."""

    kind = "fake"

    def __init__(self, answer, model="scripted"):
        self.answer, self.model, self.calls = answer, model, 0

    def generate(self, chats, params):
        self.calls += 1
        return [Generation(text=self.answer(chat[-1]["content"]), finish_reason="stop", prompt_tokens=1,
                           completion_tokens=1, index=i) for i, chat in enumerate(chats)]


def helpful(text: str) -> str:
    return "Here are a few practical steps you can take: plan ahead, ask, and follow up."


def shipped(*axes: str) -> CounterfactualSet:
    return subset(load_counterfactual(SHIPPED / "templates.jsonl"), axes or None)


def audit(tmp_path, answer, cset=None, **kw):
    """The whole audit through the answer loop (answers appended to a file)."""
    cset = cset or shipped("religion", "age")
    be = Scripted(answer)
    return run_counterfactual(cset, tmp_path / "cf.jsonl", be.model, be.kind, lambda: be, PARAMS, **kw), be


def figures(answer, cset=None, **kw):
    """The audit's figures from answers made in memory (fast: no file, no progress bar)."""
    cset = cset or shipped()
    answers = {}
    for f in filled_prompts(cset):
        text = f.prompt.prompt
        answers[f.prompt.key()] = CompletionRecord(
            id=f"a-{f.prompt.key()}", prompt_id=f.prompt.key(), prompt=[Message(role="user", content=text)],
            completion=[Message(role="assistant", content=answer(text))], finish_reason="stop",
            provenance=Provenance())
    return counterfactual_eval(cset, answers, **kw)


def axis(ev, name):
    return next(a for a in ev.axes if a.axis == name)


def gap(ev, axis_name, figure):
    return next(g for g in axis(ev, axis_name).gaps if g.figure == figure)


# --------------------------------------------------------------------------- shipped inputs


def test_shipped_templates_and_groups_load_and_fill_cleanly():
    cs = shipped()
    assert 20 <= len(cs.templates) <= 30
    assert {"religion", "nationality", "gender", "age", "disability"} <= set(cs.axes)
    assert all(len(g) >= 2 for g in cs.axes.values())
    filled = filled_prompts(cs)
    assert len(filled) == len(cs.templates) * sum(len(g) for g in cs.axes.values())
    for f in filled:  # every slot filled, no stray braces or doubled spaces
        text = f.prompt.prompt
        assert "{" not in text and "  " not in text and f.group in text
    # one template's prompts differ only in the group
    t0 = [f.prompt.prompt for f in filled if f.template == cs.templates[0].id and f.axis == "religion"]
    assert len(set(t0)) == len(cs.axes["religion"])
    assert "Ramadan" not in (SHIPPED / "templates.jsonl").read_text()


def test_bad_inputs_are_one_line_errors(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"id": "a", "template": "Help my {group} friend."}\n{"id": "b", "template": "no slot"}\n')
    with pytest.raises(CaiError, match=r"t.jsonl:2: template: .*no \{group\} slot"):
        load_templates(t)
    t.write_text('{"id": "a", "template": "Help my {group} friend."}\n'
                 '{"id": "a", "template": "Thank my {group} aunt."}\n')
    with pytest.raises(CaiError, match="template 2: id: 'a' is also template 1"):
        load_templates(t)
    g = tmp_path / "g.yaml"
    g.write_text("religion: [Muslim, Hindu]\nage: [old]\n")
    with pytest.raises(CaiError, match=r"g.yaml:2: age: an axis needs a list of at least two groups"):
        load_groups(g)
    g.write_text("religion:\n  - Muslim\n  - Hindu\n  - Muslim\n")
    with pytest.raises(CaiError, match=r"g.yaml:4: religion.2: 'Muslim' is listed twice"):
        load_groups(g)
    g.write_text("- just a list\n")
    with pytest.raises(CaiError, match="g.yaml:1: the groups file is a mapping"):
        load_groups(g)
    t.write_text('{"id": "a", "template": "Help my {group} friend."}\n')
    with pytest.raises(CaiError, match="no groups file given and no groups.yaml beside it"):
        load_counterfactual(t)


# --------------------------------------------------------------------------- disparity found / not found


def test_a_model_that_refuses_one_group_is_found(tmp_path):
    ev, be = audit(tmp_path, lambda text: REFUSAL if "Muslim" in text else helpful(text))
    assert ev.answers == 25 * 10 and be.calls == 4  # 250 prompts, 64 a generate call
    rel = axis(ev, "religion")
    muslim = next(g for g in rel.groups if g.group == "Muslim")
    others = [g for g in rel.groups if g.group != "Muslim"]
    assert muslim.refusal.value == 1.0 and muslim.refusal.n == 25 and muslim.refusal.lo > 0.8
    assert all(g.refusal.value == 0.0 and g.refusal.hi < 0.2 for g in others)
    r = gap(ev, "religion", "refusal")
    assert (r.gap, r.high, r.method) == (1.0, "Muslim", "monte-carlo")
    assert r.p_value == pytest.approx(1 / 2001)  # the Monte Carlo floor: no shuffle reaches the gap
    assert r.disparity and r.p_bonferroni < 0.05
    assert len(ev.disparities) == 2 and ev.disparities[0].startswith("religion refusal: Muslim >")
    # the refusal is also shorter: the length gap on the same axis is found too; the other axis is clean
    assert gap(ev, "religion", "length").disparity
    g = gap(ev, "age", "refusal")
    assert g.gap == 0.0 and g.p_value == 1.0 and not g.disparity


def test_every_shipped_axis_finds_its_planted_group():
    cs = shipped()
    for name, groups in cs.axes.items():
        target = groups[-1]
        ev = figures(lambda t, target=target: REFUSAL if f" {target} " in t else helpful(t), cs, n_perm=500)
        r = gap(ev, name, "refusal")
        assert (r.high, r.gap, r.disparity) == (target, 1.0, True), name
        assert [d.split(":")[0] for d in ev.disparities] == [f"{name} refusal", f"{name} length"]


def test_a_group_blind_model_reports_no_disparity():
    # refuses some templates and varies its length by template, identically for every group
    cs = shipped()
    template_of = {f.prompt.prompt: f.template for f in filled_prompts(cs)}

    def answer(text):
        h = int(hashlib.sha256(template_of[text].encode()).hexdigest(), 16)
        return REFUSAL if h % 4 == 0 else helpful(text) + " More." * (h % 7)

    ev = figures(answer, cs)
    assert ev.disparities == []
    rates = {g.refusal.value for a in ev.axes for g in a.groups}
    assert len(rates) == 1 and 0.0 < rates.pop() < 1.0  # some refusals, the same share for every group
    for a in ev.axes:
        for g in a.gaps:
            assert g.gap == 0.0 and g.p_value == 1.0


def test_group_independent_noise_is_not_called_a_disparity():
    # answers whose length varies with the whole prompt (group included) at random: no group is favoured
    def answer(text):
        h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
        return helpful(text) + " More." * (h % 9)

    ev = figures(answer)
    assert ev.disparities == []
    lengths = [g for a in ev.axes for g in a.gaps if g.figure == "length"]
    assert all(g.gap > 0 for g in lengths) and min(g.p_value for g in lengths) > 0.01


def test_a_length_disparity_and_a_judge_disparity_are_found():
    long = " I will also add some careful extra detail for you here."

    def answer(text):
        return helpful(text) + (long * 4 if "70-year-old" in text else "")

    def judge(records):
        texts = [r.prompt[-1].content for r in records]
        return [None if "Hindu" in t and "drill" in t else (0.9 if "female" in t else 0.1) for t in texts]

    ev = figures(answer, judge=judge, judge_name="p(harmful)")
    age = gap(ev, "age", "length")
    assert age.high == "70-year-old" and age.gap == pytest.approx(4 * len(long)) and age.disparity
    assert not gap(ev, "age", "refusal").disparity
    g = gap(ev, "gender", "judge")
    assert g.high == "female" and g.gap == pytest.approx(0.8) and g.disparity
    assert ev.judge == "p(harmful)" and ev.judge_failures == 1
    hindu = next(x for x in axis(ev, "religion").groups if x.group == "Hindu")
    assert hindu.judge.n == 24 and hindu.refusal.n == 25  # the failed judgement is left out, not zero
    assert not gap(ev, "religion", "judge").disparity


def test_answers_are_appended_and_a_rerun_generates_nothing(tmp_path):
    cs = CounterfactualSet((CounterfactualTemplate(id="t", template="Help my {group} friend."),
                            CounterfactualTemplate(id="u", template="Thank my {group} aunt.")),
                           {"age": ("young", "old"), "faith": ("Sikh", "Jain")}, {})
    ev, be = audit(tmp_path, helpful, cs)
    lines = (tmp_path / "cf.jsonl").read_text().splitlines()
    assert len(lines) == 8 and be.calls == 1 and ev.answers == 8
    assert all(json.loads(x)["provenance"]["sampling"]["temperature"] == 0.0 for x in lines)

    def broken():
        raise AssertionError("built although every answer exists")

    again = run_counterfactual(cs, tmp_path / "cf.jsonl", "scripted", "fake", broken, PARAMS)
    assert again == ev and (tmp_path / "cf.jsonl").read_text().splitlines() == lines
    with pytest.raises(CaiError, match="no answer to"):
        counterfactual_eval(cs, {})


# --------------------------------------------------------------------------- the permutation test


def brute_force_p(values, groups, blocks):
    """Every within-block reordering of the labels (duplicates included), by itertools."""
    obs = largest_gap(values, groups)[0]
    keys = list(dict.fromkeys(blocks))
    where = [[i for i, b in enumerate(blocks) if b == k] for k in keys]
    hits = total = 0
    for combo in itertools.product(*(itertools.permutations([groups[i] for i in idx]) for idx in where)):
        labels = list(groups)
        for idx, perm in zip(where, combo):
            for i, g in zip(idx, perm):
                labels[i] = g
        total += 1
        hits += largest_gap(values, labels)[0] >= obs - 1e-9
    return hits / total


@pytest.mark.parametrize("seed", range(4))
def test_exact_p_matches_brute_force(seed):
    import random

    rng = random.Random(seed)
    groups = ["A", "B", "C"] * 3 + ["A", "B"]
    blocks = ["t1"] * 3 + ["t2"] * 3 + ["t3"] * 3 + ["t4"] * 2
    values = [rng.choice([0.0, 1.0, 2.5]) for _ in groups]
    r = permutation_gap_test(values, groups, blocks)
    assert r["method"] == "exact"
    assert r["p_value"] == pytest.approx(brute_force_p(values, groups, blocks))


def test_monte_carlo_is_seeded_and_close_to_exact():
    groups = ["A", "B", "C"] * 6
    blocks = [f"t{i // 3}" for i in range(18)]
    values = [1.0 if (g == "A" and i % 2) else 0.0 for i, g in enumerate(groups)]
    exact = permutation_gap_test(values, groups, blocks, exact_limit=10**6)
    mc = permutation_gap_test(values, groups, blocks, exact_limit=1, n_perm=4000, seed=1)
    assert exact["method"] == "exact" and mc["method"] == "monte-carlo"
    assert mc == permutation_gap_test(values, groups, blocks, exact_limit=1, n_perm=4000, seed=1)
    assert abs(mc["p_value"] - exact["p_value"]) < 0.03
    assert permutation_gap_test([1.0], ["A"])["p_value"] is None  # one group: nothing to compare


# --------------------------------------------------------------------------- the report section


def test_report_section_shows_groups_gaps_and_escapes(tmp_path):
    cs = CounterfactualSet((CounterfactualTemplate(id="t", template="Help my {group} friend."),),
                           {"<axis>": ("young", "old")}, {})
    ev, _ = audit(tmp_path, lambda t: REFUSAL if "old" in t else helpful(t), cs)
    md = counterfactual_markdown({"base": ev})
    assert "## Counterfactual demographic audit" in md and "| old | 1 | 100.0%" in md
    assert "refusal: old vs young, gap 100.0 points, p=1 (exact)" in md  # one template: no evidence
    page = counterfactual_html({"base": ev})
    assert "&lt;axis&gt;" in page and "<axis>" not in page and page.startswith("<section")
