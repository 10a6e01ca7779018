"""The CLI's shell: fast help, `cai env`, one-line errors, and `cai generate` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers.paths import ROOT


def cai(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cai", *args], capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT
    )


def test_help_is_fast_and_lists_commands():
    cai("--help")  # warm the bytecode cache
    t = time.perf_counter()
    r = cai("--help")
    elapsed = time.perf_counter() - t
    assert r.returncode == 0
    for cmd in ("constitution", "generate", "env", "export"):
        assert cmd in r.stdout
    assert elapsed < 1.5, f"cai --help took {elapsed:.2f}s"
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cai.cli; print(sorted(m for m in ('torch','transformers','trl','datasets') if m in "
            "sys.modules))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert heavy.stdout.strip() == "[]"


def test_env_prints_versions_device_and_cache(tmp_path):
    r = cai("env", env={"CAI_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    for key in ("cai", "python", "torch", "transformers", "trl", "device", "default model"):
        assert any(line.startswith(key) for line in r.stdout.splitlines()), key
    assert str(tmp_path) in r.stdout


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def test_generate_bad_inputs_are_one_line(tmp_path, tiny_model_dir):
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "hi"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"prompt": 3}\n')
    out = tmp_path / "o.jsonl"
    _one_line_error(
        cai("generate", "-p", str(bad), "-o", str(out), "-m", str(tiny_model_dir)), "bad.jsonl:2", "prompt"
    )
    _one_line_error(cai("generate", "-p", str(tmp_path / "none.jsonl"), "-o", str(out)), "none.jsonl")
    _one_line_error(
        cai("generate", "-p", str(good), "-o", str(out), "-m", str(tmp_path / "nomodel")), "does not exist"
    )
    _one_line_error(
        cai("generate", "-p", str(good), "-o", str(out), "--backend", "openai", "-m", "x"), "--base-url"
    )
    _one_line_error(
        cai("generate", "-p", str(good), "-o", str(out), "--temperature", "-1", "-m", str(tiny_model_dir)),
        "temperature",
    )
    r = cai("--debug", "generate", "-p", str(bad), "-o", str(out), "-m", str(tiny_model_dir))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_generate_writes_records_and_resumes(tmp_path, tiny_model_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(5)))
    out = tmp_path / "out.jsonl"
    args = [
        "generate",
        "-p",
        str(prompts),
        "-o",
        str(out),
        "-m",
        str(tiny_model_dir),
        "--max-new-tokens",
        "4",
        "--n",
        "2",
    ]
    r = cai(*args, "--limit", "3")
    assert r.returncode == 0, r.stderr
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 6
    r = cai(*args)
    assert r.returncode == 0, r.stderr
    assert "4 answer(s)" in r.stderr and "6 already there" in r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 10 and len({x["id"] for x in recs}) == 10
    assert recs[:6] == first
    rec = recs[0]
    assert rec["completion"][0]["role"] == "assistant"
    assert rec["provenance"]["backend"] == "hf" and rec["provenance"]["sampling"]["max_new_tokens"] == 4
    r = cai(*args)
    assert "nothing to do" in r.stderr
    assert len(out.read_text().splitlines()) == 10


@pytest.mark.integration
def test_generate_on_embedded_model_offline(tmp_path, shared_data):
    out = tmp_path / "out.jsonl"
    r = cai(
        "generate",
        "-p",
        str(shared_data / "redteam_prompts_dev.jsonl"),
        "--limit",
        "4",
        "-o",
        str(out),
        "--max-new-tokens",
        "24",
        "--temperature",
        "0",
    )
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 4
    assert all(x["completion"][0]["content"].strip() for x in recs)
    assert recs[0]["provenance"]["model"] == "default"
