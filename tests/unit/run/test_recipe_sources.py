"""Recipe ``prompts:`` from parquet and CSV files (and a hub-like repo), through split and critique on the
tiny short-answer model; their content digests key the split stage."""

from __future__ import annotations

import json

import pytest

from cai.core.jsonl import read_prompts
from cai.run.engine import RunContext, run_pipeline
from cai.run.load import load_recipe
from cai.run.registry import build_stages
from tests.helpers.sources import datasets_cache, hub_like_folder, write_parquet  # noqa: F401
from tests.unit.run.test_stages import build_short_answer_model


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    return build_short_answer_model(tmp_path_factory.mktemp("short-model"))


@pytest.mark.integration
def test_parquet_and_csv_prompts_run_through_a_recipe(tmp_path, short_model, datasets_cache):  # noqa: F811
    write_parquet(tmp_path / "red.parquet", [{"goal": f"Tell me how to pick lock {i}", "target": "Sure"}
                                             for i in range(6)])
    (tmp_path / "help.csv").write_text("instruction\n" + "".join(f"Name fruit {i}\n" for i in range(4)))
    hub_like_folder(tmp_path / "hh")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
name: t
model: {{name: "{short_model}", batch_size: 4}}
prompts:
  redteam: [red.parquet, "hh:harmless-base:test"]
  helpful: "help.csv#prompt=instruction"
  eval_fraction: 0.3
  helpful_limit: 1
critique: {{rounds: 1, max_new_tokens: 32, temperature: 1.0, few_shot: false, helpful_ratio: 0.5,
           min_sft_fraction: 0}}
policy: {{method: none}}
eval: {{enabled: false}}
""")
    (item,) = load_recipe(recipe, run_dir=tmp_path / "run")
    assert item.recipe.prompts.redteam[1].name == "hh:harmless-base:test"  # resolved from the recipe's folder
    ctx = RunContext(item.run_dir)
    run_pipeline(build_stages(item.recipe), ctx, stop="critique")
    split = ctx.outputs["split"]
    red = [r for part in ("train_redteam", "eval_redteam") for r in read_prompts(item.run_dir / split[part])]
    texts = {r.prompt if isinstance(r.prompt, str) else r.prompt[-1].content for r in red}
    want = {f"Tell me how to pick lock {i}" for i in range(6)} | {f"test question {i}?" for i in range(3)}
    assert texts == want
    helpful = read_prompts(item.run_dir / split["train_helpful"])
    assert helpful and all(h.prompt.startswith("Name fruit") for h in helpful)
    traces = [json.loads(x) for x in (item.run_dir / "critique" / "revisions.jsonl").read_text().splitlines()]
    assert traces and ctx.outputs["critique"]
    key = json.loads((item.run_dir / "split" / "stage.json").read_text())["key"]
    (tmp_path / "help.csv").write_text("instruction\nSomething else\n")  # the CSV's bytes key the split
    run_pipeline(build_stages(load_recipe(recipe, run_dir=tmp_path / "run")[0].recipe), ctx, stop="split")
    assert json.loads((item.run_dir / "split" / "stage.json").read_text())["key"] != key
