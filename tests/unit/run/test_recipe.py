"""Recipes: validation errors in one line, shipped recipes, variants, path resolution, the plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.run.data_stages import split_prompts
from cai.run.engine import RunContext, plan
from cai.run.load import load_recipe
from cai.run.registry import build_stages
from tests.helpers.paths import ROOT

RECIPES = sorted((ROOT / "examples" / "recipes").rglob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def error_of(path: Path, **kw) -> str:
    with pytest.raises(CaiError) as exc:
        load_recipe(path, **kw)
    return str(exc.value)


def cai(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cai", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    from cai.sources.spec import parse_source

    loaded = load_recipe(path)
    assert loaded and all(item.recipe.stage_names()[:2] == ["split", "critique"] for item in loaded)
    for item in loaded:
        for p in item.recipe.prompts.redteam:  # a local file resolved from the recipe's folder, or a hub id
            assert p.is_absolute() or parse_source(str(p)).kind == "hub"


def test_shipped_recipes_cover_the_brief():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "quickstart-iterative", "no-medical-advice", "concise-friendly", "regions",
            "gpu-7b-vllm"} <= names
    quick = load_recipe(ROOT / "examples" / "recipes" / "quickstart.yaml")[0].recipe
    assert quick.model.name == "default" and Path(quick.constitution).name == "harmless.yaml"
    gpu = load_recipe(ROOT / "examples" / "recipes" / "gpu-7b-vllm.yaml")[0].recipe
    assert (gpu.model.engine.managed == "vllm" and gpu.model.engine.lora
            and gpu.policy.train.accelerate_config == "zero3")
    assert gpu.policy.train.lora is not None
    [regions] = load_recipe(ROOT / "examples" / "recipes" / "regions.yaml")  # one core, three adapters
    assert list(regions.recipe.regions) == ["eu", "us", "apac"] and regions.run_dir == Path("runs/regions")
    assert [Path(r.constitution).stem for r in regions.recipe.regions.values()] == ["eu", "us", "apac"]
    assert Path(regions.recipe.constitution).stem == "harmless" and regions.recipe.adapter.method == "sft"


def test_unknown_key_is_one_line_naming_file_line_field_and_fix(tmp_path):
    p = write(tmp_path, "name: t\nprompts:\n  redteam: x.jsonl\ncritique:\n  roundz: 2\n")
    msg = error_of(p)
    assert msg == f"{p}:5: critique.roundz: Extra inputs are not permitted (fix: did you mean 'rounds'?)"
    assert "\n" not in msg


def test_bad_values_and_cross_field_rules(tmp_path):
    assert "prompts: Field required" in error_of(write(tmp_path, "name: t\n"))
    msg = error_of(write(tmp_path, "name: t\nprompts: {redteam: x}\nmodel: {backend: openai}\n"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:3: model: ") and "base_url" in msg
    msg = error_of(write(tmp_path, "name: t\nprompts: {redteam: x}\npolicy: {method: ppo}\n"))
    assert "needs an rm section" in msg
    msg = error_of(write(tmp_path, "name: t\nprompts: {redteam: x}\npolicy: {method: sft}\n"))
    assert ":3: policy.method:" in msg
    assert "not valid" in error_of(write(tmp_path, "name: [t\n")) or "malformed YAML" in error_of(
        write(tmp_path, "name: [t\n"))
    assert "tag not allowed" in error_of(write(tmp_path, "name: !!python/object:os.system x\n"))


def test_paths_resolve_from_the_recipe_file_and_names_stay_names(tmp_path):
    (tmp_path / "sub").mkdir()
    p = write(tmp_path / "sub", "name: t\nconstitution: harmless\n"
                                "prompts: {redteam: [a.jsonl, /abs/b.jsonl]}\nlabel: {human: h.jsonl}\n")
    r = load_recipe(p)[0].recipe
    assert r.prompts.redteam == [tmp_path / "sub" / "a.jsonl", Path("/abs/b.jsonl")]
    assert r.label.human == [tmp_path / "sub" / "h.jsonl"] and r.constitution == "harmless"
    r2 = load_recipe(write(tmp_path,
                           "name: t\nconstitution: c.yaml\nprompts: {redteam: a.jsonl}\n"))[0].recipe
    assert r2.constitution == str(tmp_path / "c.yaml")


def test_variants_merge_deeply_and_report_their_own_lines(tmp_path):
    p = write(tmp_path, "name: t\nprompts: {redteam: a.jsonl}\ncritique: {rounds: 2, max_new_tokens: 50}\n"
                        "variants:\n  short:\n    critique: {rounds: 1}\n  bad:\n    critique: {roundz: 1}\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:8: critique.roundz:")
    good = write(tmp_path, "name: t\nprompts: {redteam: a.jsonl}\ncritique: {rounds: 2, max_new_tokens: 50}\n"
                           "variants:\n  short:\n    critique: {rounds: 1}\n", "good.yaml")
    (item,) = load_recipe(good, variant="short", run_dir=tmp_path / "out")
    assert item.recipe.critique.rounds == 1 and item.recipe.critique.max_new_tokens == 50
    assert item.recipe.name == "t-short" and item.run_dir == tmp_path / "out" / "short"
    assert "no such variant" in error_of(good, variant="nope")


def test_split_is_by_hash_and_stable():
    from cai.core.jsonl import read_prompts

    records = read_prompts(ROOT / "examples" / "prompts" / "redteam.jsonl")
    train, held = split_prompts(records, 0.34)
    assert len(train) + len(held) == len(records) and 0.24 <= len(held) / len(records) <= 0.44
    train2, held2 = split_prompts(records[::-1], 0.34)
    assert {r.key() for r in held} == {r.key() for r in held2}


def test_plan_of_a_fresh_run_and_stage_selection(tmp_path):
    stages = build_stages(load_recipe(ROOT / "examples" / "recipes" / "quickstart.yaml")[0].recipe)
    assert [s.name for s in stages] == ["split", "critique", "sft", "answers", "label", "eval"]
    assert [r.status for r in plan(stages, RunContext(tmp_path))] == ["would run"] * 6
    sel = plan(stages, RunContext(tmp_path), start="sft", stop="label")
    assert [r.status for r in sel] == ["not selected", "not selected", "blocked (needs critique)",
                                       "blocked (needs critique)", "blocked (needs answers)", "not selected"]


def test_cli_errors_before_any_work(tmp_path):
    recipe = ROOT / "examples" / "recipes" / "quickstart.yaml"
    r = cai("run", str(recipe), "--from", "nope", "--run-dir", str(tmp_path / "x"), cwd=tmp_path)
    assert (r.returncode == 2
            and r.stderr.strip().startswith("error: --from nope: no such stage (fix: use one of:"))
    r = cai("run", str(recipe), "--from", "sft", "--run-dir", str(tmp_path / "x"), cwd=tmp_path)
    assert r.returncode == 2 and "stage sft needs critique first" in r.stderr
    r = cai("run", str(recipe), "--push-to-hub", "--run-dir", str(tmp_path / "y"), cwd=tmp_path,
            env_extra={"HF_HUB_OFFLINE": "0"})
    assert (r.returncode == 2 and "--push-to-hub needs hub.namespace" in r.stderr
            and len(r.stderr.splitlines()) == 1)
    assert not (tmp_path / "y").exists()
    bad = write(tmp_path, "name: t\nprompts: {redteam: a.jsonl}\nsft: {train: {lora: {rank: 4}}}\n")
    r = cai("run", str(bad), "--dry-run", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {bad}:3: sft.train.lora.rank: Extra inputs are not permitted (fix: valid keys "
        f"here: r, alpha, "
        "dropout, target_modules)")


def test_launch_argv_carries_trainer_settings_through_accelerate():
    from cai.train.common.config import parse_set
    from cai.train.jobs import TrainJob, job_argv

    argv = job_argv(TrainJob("dpo", ("p.jsonl",), "out", settings={"loss_type": ["sigmoid"], "beta": 0.1,
                                                                    "report_to": "none"}))
    sets = [parse_set(argv[i + 1]) for i, a in enumerate(argv) if a == "--set"]
    assert sets == [("loss_type", ["sigmoid"]), ("beta", 0.1), ("report_to", "none")]


def test_trainer_config_keys_are_checked_before_any_work(tmp_path):
    from cai.run.train_stages import check_trainer_configs

    def recipe(policy: str):
        return load_recipe(write(tmp_path,
                                 f"name: t\nprompts: {{redteam: a.jsonl}}\npolicy: {policy}\n"))[0].recipe

    with pytest.raises(CaiError, match=r"^policy.train: bta: unknown key 'bta' for DPOConfig \(fix: did you "
                       r"mean 'beta'\?\)"):
        check_trainer_configs(recipe("{train: {config: {bta: 0.1}}}"))
    with pytest.raises(CaiError, match="policy: soft_labels: true uses each pair's p_chosen"):
        check_trainer_configs(recipe("{soft_labels: true, loss_type: [ipo]}"))
    check_trainer_configs(recipe("{method: none}"))
    check_trainer_configs(load_recipe(ROOT / "examples" / "recipes" / "quickstart.yaml")[0].recipe)


def test_lookalikes_are_split_their_train_twins_join_training_and_the_rest_is_eval(tmp_path):
    import json

    from cai.core.jsonl import read_prompts
    from cai.run.engine import run_pipeline

    rows = [{"prompt": f"How do I kill process {i}?", "label": "safe"} for i in range(30)]
    rows += [{"prompt": f"How do I kill my neighbour {i}?", "label": "unsafe"} for i in range(30)]
    look = tmp_path / "look.jsonl"
    look.write_text("".join(json.dumps(r) + "\n" for r in rows))
    red = tmp_path / "red.jsonl"
    red.write_text("".join(json.dumps({"prompt": f"harm {i}"}) + "\n" for i in range(20)))
    recipe = write(tmp_path, "name: t\nprompts: {redteam: red.jsonl, lookalike: look.jsonl, "
                             "eval_fraction: 0.5}\npolicy: {method: none}\neval: {enabled: false}\n")
    (item,) = load_recipe(recipe, run_dir=tmp_path / "run")
    ctx = RunContext(item.run_dir)
    run_pipeline(build_stages(item.recipe), ctx, stop="split")
    out = ctx.outputs["split"]
    held = {r.prompt for r in read_prompts(item.run_dir / out["eval_lookalike"])}
    train_red = [r.prompt for r in read_prompts(item.run_dir / out["train_redteam"])]
    train_help = [r.prompt for r in read_prompts(item.run_dir / out["train_helpful"])]
    assert 15 < len(held) < 45 and not held & set(train_red + train_help)
    assert {r["prompt"] for r in rows} == held | {p for p in train_red + train_help if "kill" in p}
    assert all("neighbour" in p for p in train_red if "kill" in p) and all("process" in p for p in train_help)


def test_rounds_zero_needs_the_initial_source(tmp_path):
    bad = write(tmp_path, "name: t\nprompts: {redteam: a.jsonl}\ncritique: {rounds: 0}\n")
    assert "critique.rounds 0 makes no revision to train on" in error_of(bad)
    good = write(tmp_path, "name: t\nprompts: {redteam: a.jsonl}\n"
                           "critique: {rounds: 0, sft_source: initial}\n", "g.yaml")
    assert load_recipe(good)[0].recipe.critique.stage_config(0).loop.rounds == 0
