"""Iterative RLAIF (``rounds: N``): each later round samples the latest policy, labels and trains DPO in
stages of its own, resumable; the eval compares every round."""

from __future__ import annotations

import json
import shutil

import pytest

from cai.run.recipe import Recipe
from cai.run.registry import build_stages
from tests.helpers.paths import ROOT
from tests.unit.run.test_stages import build_short_answer_model, cai, statuses, write_recipe

ROUND_STAGES = ["split", "critique", "sft", "answers", "label", "policy", "answers_r2", "label_r2",
                "policy_r2", "eval"]


def test_later_rounds_chain_on_the_previous_policy():
    recipe = Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, rounds=3, policy={"reference": "initial"})
    stages = {s.name: s for s in build_stages(recipe)}
    assert stages["answers_r2"].deps == ("split", "policy")
    assert stages["label_r3"].deps == ("answers_r3",)
    assert stages["policy_r3"].deps == ("label_r3", "sft", "policy_r2")
    assert stages["eval"].deps == ("split", "sft", "policy", "policy_r2", "policy_r3")
    with pytest.raises(ValueError, match="rounds 2 iterates DPO"):
        Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, rounds=2, policy={"method": "none"})


def test_one_round_keys_do_not_depend_on_the_new_settings(tmp_path):
    from cai.run.engine import RunContext

    ctx = RunContext(tmp_path)
    one = Recipe(name="t", prompts={"redteam": ["r.jsonl"]})
    other = Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, policy={"reference": "initial"})
    policy = {s.name: s for s in build_stages(one)}["policy"]
    assert policy.fingerprint(ctx) == {s.name: s for s in build_stages(other)}["policy"].fingerprint(ctx)


@pytest.mark.integration
def test_two_rounds_run_resume_and_report_each_round(tmp_path):
    model = build_short_answer_model(tmp_path / "model")
    const = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "constitutions" / "harmless.yaml", const)
    recipe = write_recipe(tmp_path, model, const)
    recipe.write_text(recipe.read_text().replace("hub: {namespace: someone}", "rounds: 2"), encoding="utf-8")
    run_dir = tmp_path / "runs" / "tiny"

    first = cai("run", str(recipe), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert statuses(first.stdout) == {s: "ran" for s in ROUND_STAGES}, first.stdout
    cands = [json.loads(x) for x in (run_dir / "answers_r2" / "candidates.jsonl").read_text().splitlines()]
    assert cands and {c["provenance"]["model"] for c in cands} == {"runs/tiny/policy/model"}
    assert (run_dir / "label_r2" / "preferences.jsonl").is_file()
    card = json.loads((run_dir / "policy_r2" / "model" / "cai_card.json").read_text())
    assert "a frozen copy of runs/tiny/policy/model" in json.dumps(card), card
    summary = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["base", "round1", "round2"]
    report = (run_dir / "eval" / "report.md").read_text()
    assert "round1" in report and "## Rounds" in report
    assert "rounds-plot" in (run_dir / "eval" / "report.html").read_text()

    again = cai("run", str(recipe), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(again.stdout) == {s: "skipped" for s in ROUND_STAGES}
