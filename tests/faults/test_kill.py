"""Kill and resume: `cai critique` and `cai label` SIGKILLed at 20+ seeded random moments each, then finished.

The trials run in :mod:`tests.helpers.kill_harness` (one zygote process, a fork per
trial, so a trial costs no Python/torch start-up). Here we check what is left:
every expected record exactly once, every line valid for its schema, no torn
tail, each torn fragment the harness saw moved to ``<file>.torn`` byte for byte,
the append-only files never lost a complete line, no lock left behind, and the
records equal to those of an uninterrupted run (timestamps aside). Also SIGINT
on `cai label`: a clean stop naming the file and how to resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cai.core.jsonl import read_records
from cai.core.records import CompletionRecord, LabelRecord, PreferenceRecord, RevisionRecord, SFTRecord
from tests.helpers.paths import ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
KILLS = 20


def spec(tmp_path: Path, argv: list[str], watch: list[str], seed: int, warm: Path) -> dict[str, Any]:
    return {"argv": argv, "out": "@OUT@", "watch": watch, "seed": seed, "kills": KILLS,
            "max_trials": 2 * KILLS, "pause": 0.0005, "work": str(tmp_path), "warm": str(warm)}


def run_harness(tmp_path: Path, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the specs in one zygote process (one import of torch and transformers for all)."""
    spec_path, result_path = tmp_path / "specs.json", tmp_path / "results.json"
    spec_path.write_text(json.dumps(specs))
    r = subprocess.run([sys.executable, "-m", "tests.helpers.kill_harness", str(spec_path), str(result_path)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(result_path.read_text())


def strip_volatile(obj: Any, ndigits: int = 5) -> Any:
    """A record without its creation time, floats rounded (batched scoring may differ in the last bits).

    >>> strip_volatile({"provenance": {"created_at": "t", "model": "m"}, "p": 0.1234567})
    {'provenance': {'model': 'm'}, 'p': 0.12346}
    """
    if isinstance(obj, dict):
        return {k: strip_volatile(v, ndigits) for k, v in obj.items() if k != "created_at"}
    if isinstance(obj, list):
        return [strip_volatile(v, ndigits) for v in obj]
    if isinstance(obj, float):
        return round(obj, ndigits)
    return obj


def by_id(path: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{path.name}: a record appears twice"
    return {r["id"]: strip_volatile(r) for r in rows}


def check_trials(result: dict[str, Any]) -> list[dict[str, Any]]:
    """What every run of the harness must show; returns the kill events."""
    assert result["reference_code"] == 0, result["reference_log"]
    assert result["final_code"] == 0, result["final_log"]
    assert result["violations"] == []
    events = result["events"]
    killed = [e for e in events if e["killed"]]
    assert len(killed) >= KILLS, events
    # a rerun never fails, whatever the last kill left
    assert all(e["code"] in (0, -9) for e in events), events
    assert sum(e["kind"] == "delay" for e in killed) >= 3  # before the first record, loading, resuming
    assert sum(bool(e["torn"]) for e in killed) >= 3  # kills that landed mid-record
    sizes = [e["size_after"] for e in killed]
    assert len(set(sizes)) >= 8, sizes  # kills spread over the run, not bunched at one point
    return killed


def check_files(result: dict[str, Any], schemas: dict[str, type]) -> None:
    ref, run = Path(result["reference"]), Path(result["run"])
    for name, schema in schemas.items():
        path = run / name
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{name}: torn tail left"
        assert len(read_records(path, schema)) == data.count(b"\n")  # every line valid for its schema
        assert by_id(path) == by_id(ref / name), f"{name}: records differ from an uninterrupted run"
        torn = path.with_name(name + ".torn")
        seen = result["torn"].get(str(path), [])
        kept = torn.read_bytes().split(b"\n")[:-1] if torn.exists() else []
        assert kept == [f.encode("latin-1") for f in seen], (f"{name}.torn does not hold exactly "
                                                             f"the torn tails")
        assert not path.with_name(name + ".lock").exists()


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_dir, shared_data) -> dict[str, dict[str, Any]]:
    """Both stages' trials, run once for the module."""
    tmp = tmp_path_factory.mktemp("kill")
    critique = ["critique", "-p", str(shared_data / "redteam_prompts_dev.jsonl"), "--limit", "10",
                "-m", str(tiny_model_dir), "--rounds", "1", "--max-new-tokens", "16", "--temperature", "1.0",
                "--batch-size", "1", "--revision-pairs", "-o", "@OUT@"]
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about the fox number {i}."}) + "\n"
                               for i in range(12)))
    label = ["label", "-p", str(prompts), "-o", "@OUT@", "-m", str(tiny_model_dir), "--k", "3",
             "--max-new-tokens", "8", "--temperature", "1.0", "--pairs-per-call", "1",
             "--feedback-batch-size", "2", "--no-few-shot"]
    specs = [spec(tmp / "critique", critique, ["revisions.jsonl"], 7, tiny_model_dir),
             spec(tmp / "label", label, ["candidates.jsonl", "labels.jsonl"], 11, tiny_model_dir)]
    critique_result, label_result = run_harness(tmp, specs)
    return {"critique": critique_result, "label": label_result}


@pytest.fixture(scope="module")
def critique_result(results):
    return results["critique"]


@pytest.fixture(scope="module")
def label_result(results):
    return results["label"]


def test_critique_survives_20_random_sigkills(critique_result):
    check_trials(critique_result)
    check_files(critique_result, {"revisions.jsonl": RevisionRecord})
    ref, run = Path(critique_result["reference"]), Path(critique_result["run"])
    assert len(by_id(run / "revisions.jsonl")) == 10
    # rebuilt from the traces: the same as uninterrupted
    for derived in ("sft.jsonl", "pairs_revision.jsonl"):
        assert by_id(run / derived) == by_id(ref / derived)
    read_records(run / "sft.jsonl", SFTRecord)
    stats = json.loads((run / "stats.json").read_text())
    assert stats == json.loads((ref / "stats.json").read_text())
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_label_survives_20_random_sigkills(label_result):
    killed = check_trials(label_result)
    check_files(label_result, {"candidates.jsonl": CompletionRecord, "labels.jsonl": LabelRecord})
    ref, run = Path(label_result["reference"]), Path(label_result["run"])
    assert len(by_id(run / "candidates.jsonl")) == 36  # 12 prompts x k=3
    labels = by_id(run / "labels.jsonl")
    assert len(labels) >= 12  # up to 3 pairs a prompt, fewer when two answers are the same
    # kills landed in both stages: while sampling candidates and while labelling
    assert {name for e in killed for name in e["torn"]} == {"candidates.jsonl", "labels.jsonl"}
    assert by_id(run / "preferences.jsonl") == by_id(ref / "preferences.jsonl")
    assert len(read_records(run / "preferences.jsonl", PreferenceRecord)) == sum(
        x["status"] == "ok" for x in labels.values())
    assert json.loads((run / "stats.json").read_text()) == json.loads((ref / "stats.json").read_text())
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sigint_stops_label_cleanly_and_says_how_to_resume(tmp_path, tiny_model_dir):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Fox {i}?", "chosen": "A fox.", "rejected": "No idea."})
                             + "\n" for i in range(40)))
    run = tmp_path / "run"
    args = [sys.executable, "-m", "cai", "label", "--responses", str(pairs), "-o", str(run), "-m",
            str(tiny_model_dir), "--pairs-per-call", "1", "--no-few-shot"]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    labels = run / "labels.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if labels.exists() and labels.read_bytes().count(b"\n") >= 2:  # the first is surely committed
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "rerun the same command to resume" in err.splitlines()[-1]
    assert not (run / "labels.jsonl.lock").exists()
    assert labels.read_bytes().endswith(b"\n")
    n = len(read_records(labels, LabelRecord))
    assert 1 <= n < 40
    r = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(by_id(labels)) >= n and f"({n} already in" in r.stderr


def test_ctrl_c_mid_line_removes_it_but_during_fsync_keeps_it(tmp_path, monkeypatch):
    from cai.core.jsonl import JsonlWriter

    path = tmp_path / "out.jsonl"
    real_write = os.write

    def half_then_interrupt(fd, data):
        if len(data) > 40:
            return real_write(fd, data[:20])
        raise KeyboardInterrupt

    def interrupt(fd):
        raise KeyboardInterrupt

    with JsonlWriter(path) as w:
        w.write({"id": "a", "text": "first"})
        monkeypatch.setattr(os, "write", half_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            w.write({"id": "b", "text": "x" * 100})
        monkeypatch.setattr(os, "write", real_write)
        assert "b" not in w and path.read_text().count("\n") == 1  # the partial line is gone
        monkeypatch.setattr(os, "fsync", interrupt)
        with pytest.raises(KeyboardInterrupt):
            w.write({"id": "c", "text": "whole"})
        monkeypatch.undo()
        assert "c" in w  # the whole line was written before Ctrl-C: kept, and never written twice
        assert w.write({"id": "c", "text": "again"}) is False
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "c"]


def test_derived_outputs_get_the_same_mode_as_appended_records(tmp_path):
    from cai.core.atomic_files import write_atomic
    from cai.core.jsonl import JsonlWriter

    with JsonlWriter(tmp_path / "labels.jsonl") as w:
        w.write({"id": "a"})
    write_atomic(tmp_path / "preferences.jsonl", '{"id": "a"}\n')
    mode = (tmp_path / "labels.jsonl").stat().st_mode & 0o777
    assert (tmp_path / "preferences.jsonl").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
