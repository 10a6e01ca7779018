"""Record sources on the command line: parquet and CSV prompts in `cai generate`, and `cai label --human` from
a hub-like dataset repo (config and split, offline, through the real ``load_dataset``)."""

from __future__ import annotations

import json

from tests.helpers.cli import run_cli
from tests.helpers.sources import datasets_cache, hub_like_folder, write_parquet  # noqa: F401


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_generate_reads_parquet_and_csv_prompts(tmp_path, tiny_model_dir, capsys, monkeypatch,
                                                datasets_cache):  # noqa: F811
    write_parquet(tmp_path / "p.parquet", [{"goal": f"Write a poem {i}", "target": "Sure"} for i in range(3)])
    (tmp_path / "p.csv").write_text("question,risk\nHow do I bake bread?,none\nName a fox.,none\n")
    for name, want in (("p.parquet", [f"Write a poem {i}" for i in range(3)]),
                       ("p.csv", ["How do I bake bread?", "Name a fox."])):
        out = tmp_path / f"{name}.out.jsonl"
        code, _, err = run_cli(["generate", "-p", str(tmp_path / name), "-o", str(out),
                                "-m", str(tiny_model_dir), "--max-new-tokens", "2", "--temperature", "0"],
                               capsys, monkeypatch)
        assert code == 0, err
        recs = lines(out)
        assert [r["prompt"][-1]["content"] for r in recs] == want
    (tmp_path / "m.csv").write_text("text,n\nSay hi,1\n")
    out = tmp_path / "m.out.jsonl"
    code, _, err = run_cli(["generate", "-p", str(tmp_path / "m.csv"), "--columns", "prompt=text",
                            "-o", str(out), "-m", str(tiny_model_dir), "--max-new-tokens", "2"],
                           capsys, monkeypatch)
    assert code == 0, err
    assert [r["prompt"][-1]["content"] for r in lines(out)] == ["Say hi"]


def test_label_human_pairs_from_a_hub_like_repo_offline(tmp_path, tiny_model_dir, capsys, monkeypatch,
                                                        datasets_cache):  # noqa: F811
    repo = hub_like_folder(tmp_path / "hh-rlhf")
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"prompt": "q", "completion": t}) + "\n" for t in ("one", "two")))
    run = tmp_path / "run"
    code, _, err = run_cli(["label", "--responses", str(answers), "-o", str(run), "-m", str(tiny_model_dir),
                            "--no-few-shot", "--human", f"{repo}:harmless-base:test"], capsys, monkeypatch)
    assert code == 0, err
    human = [p for p in lines(run / "preferences.jsonl") if p["source"] == "human"]
    assert sorted(p["prompt"][-1]["content"] for p in human) == [f"test question {i}?" for i in range(3)]
    assert all(p["chosen"] == [{"role": "assistant", "content": p["chosen"][0]["content"]}]
               and p["chosen"][0]["content"].startswith("I won't") for p in human)
