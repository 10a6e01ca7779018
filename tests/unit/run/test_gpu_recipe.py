"""The GPU recipe validates and prints its plan on a machine without GPUs (and offline); a real run there
stops at once, in one line. Validation checks keys, not this machine's hardware."""

from __future__ import annotations

from pathlib import Path

import pytest

from cai.core.errors import CaiError
from tests.helpers.cli import one_line_error, run_cli
from tests.helpers.paths import ROOT

GPU_RECIPE = ROOT / "examples" / "recipes" / "gpu-7b-vllm.yaml"
NO_GPU = pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks a machine without GPUs")


def test_gpu_recipe_reads_hub_datasets_not_local_paths():
    from cai.run.load import load_recipe

    prompts = load_recipe(GPU_RECIPE)[0].recipe.prompts
    sources = [str(p) for p in [*prompts.redteam, *prompts.helpful]]
    assert sources == ["Anthropic/hh-rlhf:harmless-base:train",
                       "JailbreakBench/JBB-Behaviors:behaviors:harmful#prompt=Goal",
                       "Anthropic/hh-rlhf:helpful-base:train"]
    assert "shared/data" not in GPU_RECIPE.read_text()


def test_gpu_recipe_dry_runs_on_cpu_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run_cli(["run", str(GPU_RECIPE), "--dry-run", "--run-dir", str(tmp_path / "run")],
                             capsys, monkeypatch)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("stage ")]
    assert [ln.split()[2] for ln in lines] == ["split", "critique", "sft", "answers", "label", "rm", "policy",
                                               "eval"]
    assert all("... would run" in ln for ln in lines), out
    assert "key unknown until its data can be read: Anthropic/hh-rlhf:harmless-base:train" in lines[0]
    assert "key unknown: depends on" in lines[-1]
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


@NO_GPU
def test_gpu_recipe_real_run_on_cpu_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["run", str(GPU_RECIPE), "--run-dir", str(tmp_path / "run")], capsys, monkeypatch)
    one_line_error(code, err, "sft.train: accelerate_config zero3", "needs CUDA GPUs")
    assert not (tmp_path / "run").exists()


def _recipe(tmp_path: Path, train: str):
    from cai.run.load import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text(f"name: hw\nprompts: {{redteam: {ROOT / 'examples' / 'prompts' / 'redteam.jsonl'}}}\n"
                 f"policy: {{method: dpo, train: {train}}}\n")
    return load_recipe(p)[0].recipe


@NO_GPU
def test_hardware_keys_are_checked_only_for_a_real_run(tmp_path):
    from cai.run.train_stages import check_trainer_configs

    recipe = _recipe(tmp_path, "{config: {bf16: true, tf32: true}}")
    check_trainer_configs(recipe, hardware=False)
    with pytest.raises(CaiError) as err:
        check_trainer_configs(recipe, hardware=True)
    assert err.value.message.startswith("policy.train: DPOConfig: bf16: true (from bf16) needs a GPU with "
                                        "bf16")
    # a key that is wrong on any machine still fails without the hardware
    with pytest.raises(CaiError, match="policy.train: .*unknown key 'bf61'"):
        check_trainer_configs(_recipe(tmp_path, "{config: {bf61: true}}"), hardware=False)
    with pytest.raises(CaiError, match="neither a shipped profile nor a file"):
        check_trainer_configs(_recipe(tmp_path, "{accelerate_config: nope.yaml}"), hardware=False)


def test_plan_keys_unknown_only_downstream_of_an_unreadable_hub_source(tmp_path):
    from cai.run.engine import RunContext, SourceUnavailable, Stage, plan, run_pipeline

    def unreadable(ctx):
        raise SourceUnavailable("org/set: offline and not in the hub cache")

    stages = [Stage("a", (), lambda c: 1, lambda c: {}), Stage("b", (), unreadable, lambda c: {}),
              Stage("c", ("a",), lambda c: 2, lambda c: {}),
              Stage("d", ("b", "c"), lambda c: 3, lambda c: {})]
    got = {r.name: (r.status, r.key is None) for r in plan(stages, RunContext(tmp_path))}
    assert got == {"a": ("would run", False),
                   "b": ("would run (key unknown until its data can be read: org/set: offline and not in the "
                         "hub cache)", True),
                   "c": ("would run", False), "d": ("would run (key unknown: depends on b)", True)}
    # a run, unlike a plan, stops on it with its one line (after the stages before it)
    with pytest.raises(CaiError, match="offline and not in the hub cache"):
        run_pipeline(stages, RunContext(tmp_path / "run"))
    assert (tmp_path / "run" / "a" / "stage.json").is_file() and not (tmp_path / "run" / "b").exists()


def test_an_uncached_hub_source_is_unavailable_while_a_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from cai.run.engine import SourceUnavailable, file_digest

    with pytest.raises(SourceUnavailable, match="no-org/no-such-set-xyz:train: not a local file or folder"):
        file_digest("no-org/no-such-set-xyz:train")
    with pytest.raises(CaiError) as err:
        file_digest(tmp_path / "missing.jsonl")
    assert not isinstance(err.value, SourceUnavailable)
