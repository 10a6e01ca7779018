"""`cai label` end to end: kill -9 and resume, one-line errors, and the no-logprobs fallback on a real
server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.servers import server_fixture


def cai(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "cai", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_kill_9_then_rerun_labels_each_pair_once(tmp_path, tiny_model_dir):
    N = 24  # prompts
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about the fox number {i}."}) + "\n"
                               for i in range(N)))
    run = tmp_path / "run"
    args = ["label", "-p", str(prompts), "-o", str(run), "-m", str(tiny_model_dir), "--k", "2",
            "--max-new-tokens", "8", "--temperature", "1.0", "--pairs-per-call", "1",
            "--feedback-batch-size", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cai", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    labels = run / "labels.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if labels.exists() and labels.read_bytes().count(b"\n") >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    n_before = len(lines(labels))
    assert 2 <= n_before < N
    assert not (run / "preferences.jsonl").exists()

    r = cai(*args)
    assert r.returncode == 0, r.stderr
    assert "already in" in r.stderr
    cands, labs = lines(run / "candidates.jsonl"), lines(labels)
    assert len(cands) == 2 * N and len({c["id"] for c in cands}) == 2 * N
    n_pairs = sum(1 for i in range(N) if len({c["completion"][0]["content"].strip() for c in cands
                                                if c["prompt"][-1]["content"].endswith(f"number {i}.")}) == 2)
    assert len(labs) == n_pairs and len({x["id"] for x in labs}) == n_pairs
    prefs = lines(run / "preferences.jsonl")
    assert len(prefs) == sum(x["status"] == "ok" for x in labs)
    assert all(p["source"] == "ai" and 0.5 <= p["p_chosen"] <= 1 and p["ai_label"]["method"] == "logprobs"
               for p in prefs)
    stats = json.loads((run / "stats.json").read_text())
    assert stats["pairs"] == n_pairs and "pairs" in r.stdout

    # a filter change rebuilds the outputs without touching the model or the labels
    before = labels.read_bytes()
    r = cai(*args, "--min-confidence", "1.0")
    assert r.returncode == 0 and "nothing to do" in r.stderr
    assert labels.read_bytes() == before
    assert json.loads((run / "stats.json").read_text())["filters"]["min_confidence"] == 1.0


def test_bad_options_are_one_line_errors(tmp_path, tiny_model_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    out = str(tmp_path / "run")
    one_line_error(cai("label", "-p", str(prompts), "-o", out, "--temperature", "0.3"),
                   "--temperature", "0.7")
    one_line_error(cai("label", "-p", str(prompts), "-o", out, "--k", "1"), "--k")
    one_line_error(cai("label", "-o", out), "--prompts", "--responses")
    one_line_error(cai("label", "--responses", str(prompts), "-o", out), "p.jsonl:1")
    one_line_error(cai("label", "-p", str(prompts), "-o", out, "--min-confidence", "0.2"), "min-confidence")
    one_line_error(cai("label", "-p", str(prompts), "-o", out, "-c", str(tmp_path / "none.yaml")),
                   "none.yaml")


def test_responses_and_human_pairs(tmp_path, tiny_model_dir):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": t}) + "\n"
                               for i in range(2) for t in ("first answer", "second answer", "third")))
    human = tmp_path / "human.jsonl"
    human.write_text(json.dumps({"prompt": "h", "chosen": "yes", "rejected": "no", "weight": 2.0}) + "\n")
    run = tmp_path / "run"
    r = cai("label", "--responses", str(answers), "-o", str(run), "--feedback-model", str(tiny_model_dir),
            "--principles-per-pair", "2", "--human", str(human), "--human-weight", "0.25", "--no-few-shot")
    assert r.returncode == 0, r.stderr
    labs = lines(run / "labels.jsonl")
    assert len(labs) == 6 and all(x["provenance"]["model"] == str(tiny_model_dir) for x in labs)
    assert not (run / "candidates.jsonl").exists()
    prefs = lines(run / "preferences.jsonl")
    assert [p["source"] for p in prefs].count("human") == 1
    assert [p["weight"] for p in prefs if p["source"] == "human"] == [0.5]


server = server_fixture(lambda request: request.getfixturevalue("tiny_model_dir"))


@pytest.mark.integration
def test_server_without_logprobs_falls_back_to_parsed_letters(server, tmp_path):
    from cai.backends.openai.backend import OpenAIBackend
    from cai.constitution.load import load_constitution
    from cai.core.records import Message
    from cai.stages.label.labeler import LabelConfig, label_records
    from cai.stages.label.outputs import Filters, label_stats, select_preferences
    from cai.stages.label.pairs import make_pair

    be = OpenAIBackend(server.model, base_urls=[server.base_url], timeout=60)
    pairs = [make_pair([Message(role="user", content=f"How do I bake bread {i}?")], "Mix flour and water.",
                       "I cannot help with that.") for i in range(3)]
    recs = list(label_records(pairs, be, load_constitution("harmless"), LabelConfig(letter_max_new_tokens=4)))
    assert len(recs) == 3
    reads = [j for r in recs for j in r.judgements]
    assert reads and all(j.method == "generated" and j.raw is not None for j in reads)
    for j in reads:  # a random tiny model: whatever it wrote is kept, and only a clean letter counts
        assert (j.p_option_a is None) == (j.error is not None)
    for r in recs:
        assert (r.status == "failed") == (r.p_a is None)
    stats = label_stats(recs, *select_preferences(recs, Filters()))
    assert stats["reads"]["generated"] == len(reads)
    assert stats["reads"]["failed"] == sum(j.p_option_a is None for j in reads)
    assert stats["failed_pairs"] == sum(r.status == "failed" for r in recs)
