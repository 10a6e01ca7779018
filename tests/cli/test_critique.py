"""`cai critique` end to end in a subprocess on the tiny model: outputs, one-line errors, SIGKILL/SIGINT and
resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cai.stages.export import to_dataset
from tests.helpers.paths import ROOT


def cai_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cai", "critique", *args]


# One thread: the tiny model gains nothing from more, and a shared machine makes threads spin.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def cai(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = ENV
    return subprocess.run(cai_cmd(*args), capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def test_bad_options_are_one_line_errors(tmp_path, tiny_model_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    base = ["-p", str(prompts), "-m", str(tiny_model_dir), "-o", str(tmp_path / "run")]
    one_line_error(cai(*base, "--sft-round", "3"), "--sft-round 3", "1..2")
    one_line_error(cai(*base, "--rounds", "0"), "rounds")
    one_line_error(cai(*base, "--helpful-ratio", "-1"), "--helpful-ratio")
    one_line_error(cai(*base, "-c", "no-such-constitution"), "no-such-constitution")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"prompt": [{"role": "assistant", "content": "x"}]}\n')
    one_line_error(cai("-p", str(bad), "-m", str(tiny_model_dir), "-o", str(tmp_path / "run")),
                   "bad.jsonl:2", "prompt")
    assert not (tmp_path / "run" / "revisions.jsonl").exists()


def test_end_to_end_with_helpful_mix_and_revision_pairs(tmp_path, tiny_model_dir, shared_data):
    out = tmp_path / "run"
    args = ["-p", str(shared_data / "redteam_prompts_dev.jsonl"), "--limit", "4", "-m", str(tiny_model_dir),
            "-o", str(out), "--rounds", "1", "--max-new-tokens", "24", "--temperature", "1.0",
            "--batch-size", "3", "--helpful-prompts", str(shared_data / "benign_instructions.jsonl"),
            "--helpful-ratio", "0.5", "--revision-pairs"]
    r = cai(*args)
    assert r.returncode == 0, r.stderr
    assert "traces: 6 (4 revised prompts x samples over 4 prompts, 2 helpful)" in r.stdout
    assert "revision-pairs" not in r.stderr and str(out / "revisions.jsonl") in r.stderr
    traces = lines(out / "revisions.jsonl")
    assert [t["kind"] for t in traces] == ["revision"] * 4 + ["helpful"] * 2
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"] == 6 and stats["helpful_records"] == 2 and stats["pairs"] is not None
    sft = lines(out / "sft.jsonl")
    assert len(sft) == stats["sft_rows"]
    if sft:
        assert len(to_dataset(sft=out / "sft.jsonl", test_fraction=0.0)["train_sft"]) == len(sft)
    before = (out / "sft.jsonl").read_bytes()
    again = cai(*args)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert (out / "sft.jsonl").read_bytes() == before and len(lines(out / "revisions.jsonl")) == 6


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cai_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT)


def _wait_for_lines(path: Path, proc: subprocess.Popen, n: int, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"run ended or stalled before writing {n} lines: {proc.poll()}")


def _content(trace: dict) -> tuple:
    return trace["id"], trace["answer"], json.dumps(trace["rounds"], sort_keys=True)


N = 10


@pytest.fixture(scope="module")
def kill_args(tiny_model_dir, shared_data):
    return ["-p", str(shared_data / "redteam_prompts_dev.jsonl"), "--limit", str(N), "-m",
            str(tiny_model_dir), "--rounds", "1", "--max-new-tokens", "16", "--temperature", "1.0",
            "--batch-size", "1"]


def test_sigkill_mid_run_then_resume_gives_each_trace_once(tmp_path, kill_args):
    out = tmp_path / "killed"
    proc = _start([*kill_args, "-o", str(out)])
    _wait_for_lines(out / "revisions.jsonl", proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = lines(out / "revisions.jsonl")
    assert 2 <= len(partial) < N, "the run must be killed mid-way"
    r = cai(*kill_args, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "taking over a stale lock" in r.stderr
    traces = lines(out / "revisions.jsonl")
    assert len(traces) == N and len({t["id"] for t in traces}) == N
    assert traces[: len(partial)] == partial
    clean = tmp_path / "clean"
    assert cai(*kill_args, "-o", str(clean)).returncode == 0
    assert sorted(map(_content, traces)) == sorted(map(_content, lines(clean / "revisions.jsonl")))
    assert ((out / "sft.jsonl").read_bytes().count(b"\n")
            == json.loads((out / "stats.json").read_text())["sft_rows"])


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path, kill_args):
    out = tmp_path / "interrupted"
    proc = _start([*kill_args, "-o", str(out)])
    _wait_for_lines(out / "revisions.jsonl", proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert str(out / "revisions.jsonl") in err.splitlines()[-1]
    assert not (out / "revisions.jsonl.lock").exists()
    assert 1 <= len(lines(out / "revisions.jsonl")) < N
