"""One training stage trained outside `cai run`: `--train-argv` prints its job, `--mark-trained` records it.

No model is trained: the earlier stages' `stage.json` are written with the keys `cai run` would give them,
and the "external training" is a model card written by hand.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.run.engine import RunContext, plan, read_state, write_state
from cai.run.external import mark_trained, train_argv
from cai.run.load import load_recipe
from cai.run.registry import build_stages
from tests.helpers.cli import one_line_error, run_cli
from tests.helpers.paths import ROOT

PROMPTS = ROOT / "examples" / "prompts"


def _recipe(tmp_path: Path) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(f"""
name: ext
model: {{name: default}}
prompts: {{redteam: {PROMPTS / 'redteam.jsonl'}, helpful: {PROMPTS / 'benign.jsonl'}}}
sft: {{train: {{max_steps: 3, accelerate_config: ddp, num_processes: 2}}}}
policy: {{method: dpo, beta: 0.2}}
run_dir: {tmp_path / 'run'}
""")
    return p


def _finish(stages, run_dir: Path, *names: str) -> None:
    """Write `stage.json` for ``names`` with the keys a run would give them (their outputs made up)."""
    results = {r.name: r for r in plan(stages, RunContext(run_dir))}
    fake = {"split": {"train_redteam": "split/train_redteam.jsonl", "train_redteam_count": 3,
                      "train_helpful": "split/train_helpful.jsonl", "train_helpful_count": 2},
            "critique": {"sft": "critique/sft.jsonl", "sft_rows": 5}}
    for n in names:
        write_state(run_dir / n, {"stage": n, "key": results[n].key, "status": "complete",
                                  "outputs": fake[n]})


def test_train_argv_then_mark_trained_lets_the_run_go_on(tmp_path):
    item = load_recipe(_recipe(tmp_path))[0]
    stages, run_dir = build_stages(item.recipe), item.run_dir
    with pytest.raises(CaiError, match="sft needs critique finished"):
        train_argv(item.recipe, stages, run_dir, "sft")
    _finish(stages, run_dir, "split", "critique")

    argv = train_argv(item.recipe, stages, run_dir, "sft")
    out = run_dir.resolve() / "sft" / "model"
    assert argv[:6] == ["train", "sft", "--data", str(run_dir.resolve() / "critique" / "sft.jsonl"),
                        "--model", "default"]
    assert argv[argv.index("--output") + 1] == str(out) and "--accelerate-config" not in argv
    assert "max_steps=3" in argv  # the recipe's train options, as `cai run` passes them
    key = {r.name: r.key for r in plan(stages, RunContext(run_dir))}["sft"]
    assert (run_dir / "sft" / "stage.key").read_text() == key

    with pytest.raises(CaiError, match="no model card"):
        mark_trained(item.recipe, stages, run_dir, "sft")
    out.mkdir(parents=True)
    (out / "cai_card.json").write_text(json.dumps({"metrics": {"train_loss": 1.5, "global_step": 3,
                                                               "train_runtime": 12.34, "epoch": 1}}))
    outputs = mark_trained(item.recipe, stages, run_dir, "sft")
    assert outputs == {"model": "sft/model", "train_loss": 1.5, "global_step": 3, "train_runtime": 12.34}
    state = read_state(run_dir / "sft")
    assert state["key"] == key and state["status"] == "complete" and state["seconds"] == 12.3
    status = {r.name: r.status for r in plan(stages, RunContext(run_dir))}
    assert status["sft"] == "would skip" and status["answers"] == "would run"


def test_not_a_training_stage_and_a_changed_key(tmp_path):
    item = load_recipe(_recipe(tmp_path))[0]
    stages, run_dir = build_stages(item.recipe), item.run_dir
    with pytest.raises(CaiError, match=r"answers: not a training stage .*use one of: sft, policy"):
        train_argv(item.recipe, stages, run_dir, "answers")
    _finish(stages, run_dir, "split", "critique")
    (run_dir / "sft").mkdir()
    (run_dir / "sft" / "stage.key").write_text("an-older-key")
    with pytest.raises(CaiError, match="not readied for sft's current key"):
        mark_trained(item.recipe, stages, run_dir, "sft")


def test_cli_prints_a_shell_quoted_argv_on_stdout(tmp_path, capsys, monkeypatch):
    recipe = _recipe(tmp_path)
    item = load_recipe(recipe)[0]
    _finish(build_stages(item.recipe), item.run_dir, "split", "critique")
    code, out, err = run_cli(["run", str(recipe), "--train-argv", "sft"], capsys, monkeypatch)
    assert code == 0, err
    argv = shlex.split(out.strip())
    assert argv[:2] == ["train", "sft"] and len(out.strip().splitlines()) == 1
    code, _, err = run_cli(["run", str(recipe), "--train-argv", "policy"], capsys, monkeypatch)
    one_line_error(code, err, "policy needs label finished")
