"""One core, regional layers (``regions:``): the core trains once, each region gets a LoRA adapter on the
core policy with its own constitution and prompts, the eval writes the models x sets matrix, a rerun skips
everything, and editing one region's constitution re-runs only that region and the eval."""

from __future__ import annotations

import json
import shutil

import pytest

from cai.core.errors import CaiError
from cai.run.load import load_recipe
from cai.run.recipe import Recipe
from cai.run.registry import build_stages
from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT
from tests.unit.run.test_stages import cai, short_model, statuses, write_recipe  # noqa: F401 - a fixture

REGIONS = {"eu": {"constitution": "eu.yaml", "prompts": {"redteam": "eu/redteam.jsonl"}},
           "us": {"constitution": "us.yaml", "prompts": {"redteam": "us/redteam.jsonl"},
                  "adapter": {"method": "sft"}}}


def test_stage_graph_core_once_then_each_region_then_the_matrix():
    recipe = Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, regions=REGIONS,
                    adapter={"allow_weak_labels": True})
    stages = {s.name: s for s in build_stages(recipe)}
    eu = [f"regions/eu/{s}" for s in ("split", "critique", "answers", "label", "adapter")]
    us = [f"regions/us/{s}" for s in ("split", "critique", "adapter")]
    core = ["split", "critique", "sft", "answers", "label", "policy", "core"]
    assert list(stages) == [*core, *eu, *us, "eval"]
    assert stages["core"].deps == ("policy",)
    assert stages["regions/eu/critique"].deps == ("regions/eu/split", "core")
    assert stages["regions/eu/answers"].deps == ("regions/eu/split", "core")  # answers.source sft: the core
    assert stages["regions/eu/adapter"].deps == ("core", "regions/eu/label")
    assert stages["regions/us/adapter"].deps == ("core", "regions/us/critique")
    assert {"core", "regions/eu/adapter", "regions/us/split"} <= set(stages["eval"].deps)
    sft_core = Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, regions=REGIONS, policy={"method": "none"})
    assert {s.name: s for s in build_stages(sft_core)}["core"].deps == ("sft",)


@pytest.mark.parametrize("extra, message", [
    ({"regions": {"core": REGIONS["eu"]}}, "region name 'core'"),
    ({"regions": REGIONS, "variants": {"a": {}}}, "regions and variants: give one"),
    ({"regions": {"eu": {"prompts": {"redteam": "x.jsonl"}}}}, "constitution"),
])
def test_bad_regions_are_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        Recipe.model_validate({"name": "t", "prompts": {"redteam": ["r.jsonl"]}, **extra})


def test_a_region_key_typo_is_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nprompts: {redteam: r.jsonl}\nregions:\n  eu:\n    constitution: harmless\n"
                    "    prompts: {redteam: r.jsonl}\n    adaptor: {method: sft}\n")
    with pytest.raises(CaiError) as err:
        load_recipe(path)
    assert err.value.message.startswith(f"{path}:7: regions.eu.adaptor") and "adapter" in err.value.hint


def _regional_recipe(tmp_path, model):
    prompts = ROOT / "examples" / "prompts" / "regions"
    for name in ("harmless", "regions/eu", "regions/us"):
        shutil.copy(ROOT / "constitutions" / f"{name}.yaml", tmp_path / f"{name.split('/')[-1]}.yaml")
    recipe = write_recipe(tmp_path, model, tmp_path / "harmless.yaml")
    text = recipe.read_text().replace("hub: {namespace: someone}\n", "")
    text += f"""regions:
  eu:
    constitution: eu.yaml
    prompts: {{redteam: {prompts / 'eu' / 'redteam.jsonl'}, lookalike: {prompts / 'eu' / 'lookalike.jsonl'},
              limit: 3, lookalike_eval_fraction: 0.2}}
  us:
    constitution: us.yaml
    prompts: {{redteam: {prompts / 'us' / 'redteam.jsonl'}, limit: 3}}
    adapter: {{method: sft}}
adapter:
  allow_weak_labels: true  # a random model's labels carry no signal
  lora: {{r: 4, alpha: 8}}
  train: {{max_steps: 2, batch_size: 2, max_length: 256}}
"""
    recipe.write_text(text, encoding="utf-8")
    return recipe


@pytest.mark.integration
def test_core_and_adapters_run_rerun_and_region_edit(tmp_path, short_model, capsys, monkeypatch):  # noqa: F811
    recipe = _regional_recipe(tmp_path, short_model)
    run_dir = tmp_path / "runs" / "tiny"
    stages = [s.name for s in build_stages(load_recipe(recipe)[0].recipe)]

    first = cai("run", str(recipe), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert statuses(first.stdout) == {s: "ran" for s in stages}, first.stdout

    core = run_dir / "core" / "model"
    assert core.is_symlink() and (core / "config.json").is_file()
    assert "harmless" in (core / "README.md").read_text()  # the core policy's own card
    eu = run_dir / "regions" / "eu" / "adapter"
    config = json.loads((eu / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(core.absolute()) and config["r"] == 4
    assert (eu / "adapter_model.safetensors").is_file() and (eu / "train" / "config.json").is_file()
    from cai.constitution.load import load_constitution

    eu_hash = load_constitution(tmp_path / "eu.yaml").hash
    card = (eu / "README.md").read_text()
    assert "core_model: core/model" in card and eu_hash in card and "region-eu" in card and "dpo" in card
    assert "sft" in (run_dir / "regions" / "us" / "adapter" / "README.md").read_text()
    cands = [json.loads(x) for x in (run_dir / "regions" / "eu" / "critique" / "revisions.jsonl")
             .read_text().splitlines()]
    assert {c["provenance"]["constitution"]["hash"] for c in cands} == {eu_hash}
    assert {c["provenance"]["model"] for c in cands} == {"runs/tiny/core/model"}

    summary = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["core", "core+eu", "core+us"]
    refusal = summary["matrix"]["refusal"]  # figure -> model -> set
    assert set(refusal) == {"core", "core+eu", "core+us"} and set(refusal["core+eu"]) == {"core", "eu", "us"}
    assert "refusal on red-team prompts (detector) (models x prompt sets):" in first.stdout
    assert "## Segmented evaluation (models x prompt sets)" in (run_dir / "eval" / "report.md").read_text()
    assert 'id="matrix-refusal"' in (run_dir / "eval" / "report.html").read_text()

    again = cai("run", str(recipe), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(again.stdout) == {s: "skipped" for s in stages}

    eu_yaml = tmp_path / "eu.yaml"
    eu_yaml.write_text(eu_yaml.read_text().replace("than the task needs,", "than it strictly needs,", 1))
    edited = cai("run", str(recipe), cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr[-3000:]
    rerun = {s for s, status in statuses(edited.stdout).items() if status == "ran"}
    # the EU chain from its critique on (its prompt split does not read the constitution), and the eval
    eu_chain = {s for s in stages if s.startswith("regions/eu/") and s != "regions/eu/split"}
    assert rerun == eu_chain | {"eval"}, edited.stdout
    assert (run_dir / "regions" / "eu" / "adapter" / "README.md").read_text().count(eu_hash) == 0

    code, out, err = run_cli(["serve", "--run", str(run_dir), "--check"], capsys, monkeypatch)
    assert code == 0, err
    engines = [ln for ln in out.splitlines() if ln.startswith("engine transformers")]
    assert [ln.split("[")[1].split("]")[0] for ln in engines] == ["core", "eu", "us"]
    assert str(eu / "train") in engines[1]
