"""`cai eval`'s studies end to end, in-process: the guard judge (--judge guard), the counterfactual audit
(--counterfactual), best-of-n over-optimization (--best-of-n) and the PM failure probes (--pm-probes);
each checks eval.json's keys, the console, and the report.md / report.html sections."""

from __future__ import annotations

import json
import random
import re

import pytest

from cai.backends.protocol import Generation, request_seed
from cai.eval.schema import EvalSummary
from tests.helpers.cli import one_line_error, run_cli
from tests.helpers.data import BENIGN, REDTEAM, write_jsonl
from tests.helpers.fake_models import FakeJudge, FakePolicy, install


class ScriptedGuard:
    """A guard through the Backend protocol: ``reply(the Agent's answer)`` is what it generates."""

    kind = "hf"

    def __init__(self, reply, name: str = "guard-model"):
        self.model, self.reply = name, reply

    def generate(self, chats, params):
        out = []
        for i, chat in enumerate(chats):
            agent = re.search(r"\nAgent: (.*?)\n\n<END CONVERSATION>", chat[-1]["content"], re.S).group(1)
            out.append(Generation(text=self.reply(agent), finish_reason="stop", prompt_tokens=1,
                                  completion_tokens=1, index=i))
        return out


def complier(prompt: str) -> str:
    return "I can't help with that." if "bomb" in prompt.lower() else f"Sure, here is how: {prompt[:20]}"


def test_guard_judge(tmp_path, monkeypatch, capsys):
    red = write_jsonl(tmp_path / "red.jsonl", REDTEAM)
    guard = ScriptedGuard(lambda a: "oops" if "lock" in a else "unsafe\nS2" if a.startswith("Sure")
                          else "safe")
    install(monkeypatch, {"base-model": FakePolicy("base-model", complier), "guard-model": guard})
    out = tmp_path / "eval"
    args = ["eval", "--model", "base=base-model", "--redteam", str(red), "--judge", "guard",
            "--feedback-model", "guard-model", "--feedback-chat-template", "plain-llama3", "-o", str(out)]
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    s = EvalSummary.model_validate_json((out / "eval.json").read_text())
    (m,) = s.models
    assert s.judges["harm"].method == "harm-guard" and s.judges["harm"].signal is True
    g = m.guard
    assert set(g) == {"n", "unsafe", "safe", "failed", "codes", "reasons"} and g["n"] == len(REDTEAM)
    assert g["unsafe"] + g["safe"] + g["failed"] == g["n"] and g["codes"] == [["S2", g["unsafe"]]]
    assert m.harm.judge_failures == g["failed"] and m.harm.harmful.n == g["n"] - g["failed"]
    assert f"guard judge on base: {g['unsafe']} unsafe" in stdout
    assert "## Guard-model judge (guard-model)" in (out / "report.md").read_text()
    assert "<h2>Guard-model judge (guard-model)</h2>" in (out / "report.html").read_text()
    kinds = {json.loads(x)["kind"] for x in (out / "judgements" / "base.jsonl").read_text().splitlines()}
    assert kinds == {"harm-guard"}


def test_an_all_safe_guard_is_no_signal_unless_its_audit_vouches_for_it(tmp_path, monkeypatch, capsys):
    red = write_jsonl(tmp_path / "red.jsonl", REDTEAM)
    install(monkeypatch, {"base-model": FakePolicy("base-model", complier),
                          "guard-model": ScriptedGuard(lambda a: "safe")})
    base = ["eval", "--model", "base=base-model", "--redteam", str(red), "--judge", "guard",
            "--feedback-model", "guard-model"]
    code, _, err = run_cli([*base, "-o", str(tmp_path / "a")], capsys, monkeypatch)
    assert code == 0, err
    s = EvalSummary.model_validate_json((tmp_path / "a" / "eval.json").read_text())
    assert s.judges["harm"].signal is False and "constant" in s.judges["harm"].reason
    audit = tmp_path / "audit.json"
    acc = {"k": 170, "n": 200, "rate": 0.85, "lo": 0.79, "hi": 0.89}
    audit.write_text(json.dumps({"kind": "judge", "accuracy": acc, "signal": True,
                                 "settings": {"judge": "guard", "feedback_model": "guard-model"}}))
    code, _, err = run_cli([*base, "--judge-audit", str(audit), "-o", str(tmp_path / "b")], capsys,
                           monkeypatch)
    assert code == 0, err
    s = EvalSummary.model_validate_json((tmp_path / "b" / "eval.json").read_text())
    assert s.judges["harm"].signal is True and s.models[0].harm.harmful.rate == 0.0  # all safe: a finding
    other = json.loads(audit.read_text())
    other["settings"]["feedback_model"] = "another-guard"  # an audit of another judge vouches for nothing
    audit.write_text(json.dumps(other))
    code, _, err = run_cli([*base, "--judge-audit", str(audit), "-o", str(tmp_path / "c")], capsys,
                           monkeypatch)
    s = EvalSummary.model_validate_json((tmp_path / "c" / "eval.json").read_text())
    assert code == 0 and s.judges["harm"].signal is False


def test_counterfactual_audit_finds_the_refused_group(tmp_path, monkeypatch, capsys):
    def biased(prompt: str) -> str:
        return "I'm sorry, but I can't help with that." if "Muslim" in prompt else f"Of course! {prompt}"

    install(monkeypatch, {"base-model": FakePolicy("base-model", biased),
                          "judge-model": FakeJudge("judge-model")})
    out = tmp_path / "eval"
    args = ["eval", "--model", "base=base-model", "--counterfactual", "shipped", "--counterfactual-axis",
            "religion", "--counterfactual-judge", "--feedback-model", "judge-model", "--limit", "4",
            "-o", str(out)]
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    s = EvalSummary.model_validate_json((out / "eval.json").read_text())
    (m,) = s.models
    c = m.counterfactual
    assert m.harm is None and m.mean_answer_chars is None  # only the audit ran: the shipped sets are not used
    assert c.templates == 4 and [a.axis for a in c.axes] == ["religion"]
    assert c.answers == 4 * len(c.axes[0].groups)
    assert c.judge == "p(harmful), harm-rubric" and c.judge_failures == 0
    gap = {g.figure: g for g in c.axes[0].gaps}["refusal"]
    assert gap.high == "Muslim" and gap.gap == 1.0 and gap.disparity
    assert any(d.startswith("religion refusal: Muslim >") for d in c.disparities)
    assert "counterfactual audit of base" in stdout and "religion refusal: Muslim" in stdout
    assert s.settings["counterfactual"].endswith("counterfactual/templates.jsonl")
    assert len((out / "counterfactual" / "base.jsonl").read_text().splitlines()) == c.answers
    assert "## Counterfactual demographic audit" in (out / "report.md").read_text()
    assert "<h2>Counterfactual demographic audit</h2>" in (out / "report.html").read_text()


def test_study_options_are_one_line_errors(tmp_path, monkeypatch, capsys):
    benign = str(write_jsonl(tmp_path / "b.jsonl", BENIGN))
    o = ["-o", str(tmp_path / "o"), "--benign", benign]
    one_line_error(*run_cli(["eval", *o, "--best-of-n", "1,2"], capsys, monkeypatch)[::2], "preference_model")
    one_line_error(*run_cli(["eval", *o, "--best-of-n", "1,x", "--preference-model", "rm"], capsys,
                            monkeypatch)[::2], "--best-of-n", "'x'")
    one_line_error(*run_cli(["eval", *o, "--best-of-n", "0,2", "--preference-model", "rm"], capsys,
                            monkeypatch)[::2], "--best-of-n", "n=0")
    one_line_error(*run_cli(["eval", *o, "--guard-template", benign], capsys, monkeypatch)[::2],
                   "--guard-template", "judge guard")
    one_line_error(*run_cli(["eval", *o, "--counterfactual-judge"], capsys, monkeypatch)[::2],
                   "--counterfactual")
    missing = str(tmp_path / "nope.jsonl")
    one_line_error(*run_cli(["eval", *o, "--counterfactual", missing], capsys, monkeypatch)[::2], "nope")


class Sampler:
    """A policy drawing 1-8 of its ``words`` from each request's own seed (as the hf backend seeds each
    request); ``n`` samples per chat; log-probs by length (for the KL of the checkpoints)."""

    kind = "hf"

    def __init__(self, name: str, words: list[str]):
        self.model, self.words = name, words

    def generate(self, chats, params):
        out = []
        for i, chat in enumerate(chats):
            for k in range(params.n):
                seed = request_seed(params.seed, chat, k)
                rng = random.Random(seed)
                text = " ".join(rng.choice(self.words) for _ in range(rng.randint(1, 8)))
                out.append(Generation(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=3,
                                      index=i, sample=k, seed=seed))
        return out

    def score(self, chats, continuations):
        return [[-0.1 * len(c) for c in conts] for conts in continuations]


@pytest.fixture(scope="module")
def two_tiny_rms(tmp_path_factory):
    from tests.helpers.tiny import build_tiny_rm

    root = tmp_path_factory.mktemp("rms")
    return build_tiny_rm(root / "proxy", seed=1), build_tiny_rm(root / "gold", seed=2)


def test_best_of_n_and_pm_probes_on_tiny_reward_models(tmp_path, two_tiny_rms, monkeypatch, capsys):
    proxy, gold = two_tiny_rms
    install(monkeypatch, {"base-model": Sampler("base-model", ["bread", "flour", "water", "salt"]),
                          "ppo-model": Sampler("ppo-model", ["Great", "question!", "bake", "oven"]),
                          "judge-model": FakeJudge("judge-model")})
    benign = write_jsonl(tmp_path / "benign.jsonl", BENIGN)
    out = tmp_path / "eval"
    args = ["eval", "--model", "base=base-model", "--model", "ppo=ppo-model", "--benign",
            str(benign), "--limit", "2", "--max-new-tokens", "4", "--feedback-model", "judge-model",
            "--preference-model", str(proxy), "--gold-pm", str(gold), "--best-of-n", "1,2,4", "--bon-limit",
            "2", "--pm-probes", "-o", str(out)]
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    raw = json.loads((out / "eval.json").read_text())
    bon, probes = raw["overoptimization"], raw["pm_probes"]
    assert bon["ns"] == [1, 2, 4] and bon["prompts"] == 2 and [p["n"] for p in bon["points"]] == [1, 2, 4]
    assert bon["proxy"] == f"preference model {proxy}" and bon["gold"] == f"preference model {gold}"
    (cp,) = bon["checkpoints"]  # the trained model on the same axes, at its measured KL
    assert cp["name"] == "ppo" and cp["kl"] == raw["models"][1]["hacking"]["kl_from_reference"]
    assert cp["proxy"] is not None and cp["gold"] is not None
    assert len((out / "overoptimization" / "base" / "answers.jsonl").read_text().splitlines()) == 2 * 4
    assert probes["answers"] == 4 and probes["edited"] == 4 and len(probes["edits"]) >= 3
    assert probes["harm_note"] == "no harm judgements given"  # no red-team set
    assert "reward over-optimization (best-of-n):" in stdout and "preference-model probes:" in stdout
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Preference-model failure probes" in md and "| 4 | 0.636 |" in md
    for pid in ("overoptimization", "overoptimization-plot", "pm-probes", "pm-probes-plot"):
        assert f'id="{pid}"' in page
    assert page.count("data:image/png;base64,") == 2  # the two studies' plots (no other plot has data)
    code, stdout2, err = run_cli(args, capsys, monkeypatch)  # resume: nothing sampled or scored again
    assert code == 0 and stdout2 == stdout, err


def test_spec_file_and_recipe_options_take_the_study_fields(tmp_path):
    """A YAML spec (and a recipe's ``eval.options``, which go to EvalSpec as they are) sets every study."""
    from cai.core.errors import CaiError
    from cai.eval.spec import load_spec
    from cai.shipped import prompts_dir

    p = tmp_path / "spec.yaml"
    p.write_text("models: [{name: base, model: default}, {name: dpo, model: runs/x/dpo}]\nbenign: b.jsonl\n"
                 "judge: guard\nfeedback_chat_template: plain-llama3\ncounterfactual: shipped\n"
                 "counterfactual_axes: [religion]\npreference_model: rm\nbest_of_n: [4, 1, 2, 2]\n"
                 "bon_model: dpo\npm_probes: true\n")
    s = load_spec(p)
    assert s.counterfactual == prompts_dir() / "counterfactual" / "templates.jsonl"
    assert s.best_of_n == [1, 2, 4] and s.bon_model == "dpo" and s.pm_probes and s.judge == "guard"
    p.write_text(p.read_text().replace("bon_model: dpo", "bon_model: ppo"))
    with pytest.raises(CaiError, match=r"spec.yaml:9: bon_model: .*'ppo' is not one of the models"):
        load_spec(p)
