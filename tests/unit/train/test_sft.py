"""`cai train sft` end to end on the tiny model: weights change, the card names the constitution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT

PROV = {"constitution": {"name": "harmless-demo", "version": "1.3", "hash": "c0ffee12"}, "model": "tiny",
        "backend": "hf", "seed": 0, "created_at": "2026-01-01T00:00:00+00:00", "cai_version": "0.1.0"}


def cai(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cai", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def write_sft(path: Path, n: int = 8) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({
                "schema_version": 1, "id": f"rev{i}", "prompt_id": f"p{i}",
                "prompt": [{"role": "user", "content": f"How do I bake bread? ({i})"}],
                "completion": [{"role": "assistant",
                                "content": "Mix flour, water, salt and yeast, then knead and bake."}],
                "finish_reason": "stop", "provenance": PROV}) + "\n")
    return path


def test_sft_four_steps_changes_weights_and_writes_card(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    data = write_sft(tmp_path / "sft.jsonl")
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("per_device_train_batch_size: 2\nlearning_rate: 1.0e-3\nlogging_steps: 1\n"
                   "save_strategy: 'no'\n")
    out = tmp_path / "out"
    r = cai("train", "sft", "--data", str(data), "--model", str(tiny_model_dir), "--output", str(out),
            "--config", str(cfg), "--max-steps", "4", "--set", "learning_rate=1e-2", "--set",
            "disable_tqdm=true")
    assert r.returncode == 0, r.stderr[-3000:]
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    changed = [k for k in before if not (before[k] == after[k]).all()]
    assert len(changed) >= len(before) // 2, changed
    card = (out / "README.md").read_text()
    assert "harmless-demo version 1.3 (hash `c0ffee12`)" in card
    assert str(tiny_model_dir) in card and str(data) in card
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["metrics"]["global_step"] == 4
    assert facts["config"]["learning_rate"] == 0.01  # --set beat the file
    assert facts["config"]["per_device_train_batch_size"] == 2
    assert "saved the model to" in r.stderr


def test_sft_bad_config_key_is_one_line_error(tiny_model_dir, tmp_path):
    data = write_sft(tmp_path / "sft.jsonl", n=2)
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("max_seq_lenght: 128\n")
    r = cai("train", "sft", "--data", str(data), "--model", str(tiny_model_dir), "--output",
            str(tmp_path / "o"), "--config", str(cfg))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert (len(lines) == 1 and str(cfg) in lines[0] and "'max_seq_lenght'" in lines[0]
            and "did you mean" in lines[0])
    assert "Traceback" not in r.stderr
