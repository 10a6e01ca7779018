"""`--accelerate-config` re-launches the command through `accelerate launch`: DPO on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.data import write_toy_prefs
from tests.helpers.paths import ROOT


def test_dpo_under_accelerate_launch_with_two_cpu_processes(tiny_model_dir, tmp_path):
    data = write_toy_prefs(tmp_path / "prefs.jsonl", 16)
    out = tmp_path / "dpo-ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "cai", "train", "dpo", "--data", str(data), "--model", str(tiny_model_dir),
         "--output", str(out), "--soft-labels", "--max-steps", "2", "--batch-size", "2",
         "--set", "disable_tqdm=true", "--set", "save_strategy=no",
         "--accelerate-config", "ddp", "--num-processes", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "launching 2" in r.stderr
    facts = json.loads((out / "cai_card.json").read_text())
    assert facts["notes"]["processes"] == 2  # the Trainer saw a 2-process group, not two lone runs
    assert facts["metrics"]["global_step"] == 2
    assert (out / "model.safetensors").is_file()
    # Only rank 0 logs at INFO: the start line appears once.
    assert r.stderr.count("DPO with soft labels on") == 1


@pytest.mark.integration  # a second 2-process launch (~15 s idle, ~60 s on busy cores)
def test_relaunch_failure_exit_code_passes_through(tiny_model_dir, tmp_path):
    """A user error inside the launched processes is still a non-zero exit with the one-line error."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "cai", "train", "dpo", "--data", str(bad), "--model", str(tiny_model_dir),
         "--output", str(tmp_path / "o"), "--accelerate-config", "ddp", "--num-processes", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode != 0
    assert "error: " in r.stderr and "bad.jsonl:1: chosen" in r.stderr
