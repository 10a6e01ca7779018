"""`cai run` end to end on a tiny random model: every stage, rerun skips, a constitution edit, --from/--until,
hub."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.tiny import build_tiny_model

STAGES = ["split", "critique", "sft", "answers", "label", "policy", "eval"]


def build_short_answer_model(path: Path) -> Path:
    """The tiny model, changed so that it ends its answers after ~10 tokens (an EOS-leaning head).

    A random model rarely samples EOS, so every answer would be cut at max_new_tokens and
    flagged as truncated; this one stops by itself, like a real model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    build_tiny_model(path)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight  # [V, H]
        head = emb.detach().clone()
        head[:, 0] = 0.0
        head[tok.eos_token_id, 0] = 0.5  # EOS logit ~ 0.5 * sqrt(H) from the constant direction below
        model.config.tie_word_embeddings = False
        model.lm_head = torch.nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        model.lm_head.weight.copy_(head)
        emb[:, 0] = 1.0  # a constant component in every token's embedding
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def short_model(tmp_path_factory) -> Path:
    return build_short_answer_model(tmp_path_factory.mktemp("short-model"))


def write_recipe(folder: Path, model: Path, constitution: Path) -> Path:
    prompts = ROOT / "examples" / "prompts"
    text = f"""
name: tiny
model: {{name: "{model}", batch_size: 8}}
constitution: {constitution.name}
prompts:
  redteam: {prompts / 'redteam.jsonl'}
  helpful: {prompts / 'benign.jsonl'}
  eval_fraction: 0.3
  limit: 4
  helpful_limit: 2
  eval_limit: 2
critique: {{rounds: 1, max_new_tokens: 32, temperature: 1.0, few_shot: false, helpful_ratio: 0.5}}
sft:
  train: {{max_steps: 2, batch_size: 2, max_length: 256}}
answers: {{k: 2, max_new_tokens: 32}}
label: {{few_shot: false, pairs_per_call: 4}}
policy:
  method: dpo
  allow_weak_labels: true  # a random model's labels carry no signal; the refusal is tested below
  train: {{max_steps: 2, batch_size: 2, max_length: 256, config: {{precompute_ref_log_probs: true}}}}
eval:
  max_new_tokens: 16
  options: {{limit: 2}}
hub: {{namespace: someone}}
"""
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def cai(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "cai", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def statuses(stdout: str) -> dict[str, str]:
    """``stage k/n: NAME ... STATUS`` lines -> {NAME: STATUS word}, the last line of each stage winning."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("stage ") and " ... " in line:
            name = line.split(": ", 1)[1].split(" ...")[0]
            out[name] = line.split(" ... ", 1)[1].split(" (")[0]
    return out


def test_full_run_rerun_constitution_edit_and_hub(tmp_path, short_model):
    const = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "constitutions" / "harmless.yaml", const)
    recipe = write_recipe(tmp_path, short_model, const)
    run_dir = tmp_path / "runs" / "tiny"

    first = cai("run", str(recipe), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert statuses(first.stdout) == {s: "ran" for s in STAGES}, first.stdout
    assert "before/after" in first.stdout and "win rate" in first.stdout
    assert ((run_dir / "eval" / "report.html").is_file()
            and (run_dir / "policy" / "model" / "config.json").is_file())
    train = {json.loads(x)["prompt"] if isinstance(json.loads(x)["prompt"], str) else ""
             for x in (run_dir / "split" / "train_redteam.jsonl").read_text().splitlines()}
    held = {json.loads(x)["prompt"]
            for x in (run_dir / "split" / "eval_redteam.jsonl").read_text().splitlines()}
    assert train and held and not train & held
    log = (run_dir / "cai.log").read_text()  # the run folder keeps the stage lines, timestamped
    line = r"^\d{4}-\d{2}-\d{2} [\d:,]+ INFO cai.run: stage 2/\d+: critique \.\.\. ran"
    assert re.search(line, log, re.M), log
    assert "before/after on held-out prompts" in log
    assert not re.search(r"\w+Warning: ", first.stderr), first.stderr[-3000:]  # warnings: in the log only

    again = cai("run", str(recipe), "--push-to-hub", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert statuses(again.stdout) == {s: "skipped" for s in STAGES}
    assert "HF_HUB_OFFLINE is set: nothing was pushed" in again.stdout
    card = (run_dir / "hub" / "tiny-policy" / "README.md").read_text()
    assert "## Constitution" in card and "harmless" in card and "precompute_ref_log_probs" in card
    assert (run_dir / "hub" / "tiny-sft-data" / "data" / "train_sft-00000-of-00001.parquet").is_file()

    forced = cai("run", str(recipe), "--from", "policy", "--force", "policy", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert statuses(forced.stdout) == {"policy": "ran", "eval": "skipped"}
    assert "signal=no" in first.stdout  # the label stage's line says its labels carry no signal

    strict = recipe.with_name("strict.yaml")
    strict.write_text(recipe.read_text().replace("allow_weak_labels: true", "allow_weak_labels: false"))
    refused = cai("run", str(strict), "--run-dir", str(run_dir), "--from", "policy", cwd=tmp_path)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1 and "Traceback" not in refused.stderr
    assert "policy: the AI labels carry no signal" in errors[0] and "allow_weak_labels: true" in errors[0]

    const.write_text(const.read_text().replace('version: "1.0"', 'version: "1.1"', 1))
    dry = cai("run", str(recipe), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert statuses(dry.stdout) == {"split": "would skip", **{s: "would run" for s in STAGES[1:]}}
    partial = cai("run", str(recipe), "--until", "critique", cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert statuses(partial.stdout) == {"split": "skipped", "critique": "ran"}  # later stages: not selected
    assert list(tmp_path.glob("runs/tiny/critique.*.old")), "the previous critique outputs are kept aside"
