"""Bad record sources, each one ``error:`` line naming the source and the fix, exit 2, and earlier outputs
byte-identical afterwards: a hub id not cached while offline, a missing config or split, a column mapping
naming no column, a .parquet file that is not parquet, and a shape no adapter reads."""

from __future__ import annotations

import pytest

from tests.helpers.cli import one_line_error, run_cli
from tests.helpers.sources import datasets_cache, hub_like_folder  # noqa: F401

SEEDED = {"out.jsonl": '{"id": "seed-1", "note": "an earlier answer"}\n',
          "lab/labels.jsonl": '{"id": "seed-2", "note": "an earlier label"}\n'}


def gen(source: str, *extra: str) -> list[str]:
    return ["generate", "-p", source, "-o", "{tmp}/out.jsonl", "-m", "{model}", "--max-new-tokens", "2",
            *extra]


def lab(*extra: str) -> list[str]:
    return ["label", "-m", "{model}", "-o", "{tmp}/lab", "--no-few-shot", *extra]


CASES = {
    "hub id not cached offline": (gen("nobody-here/no-such-set:default:train"),
                                  ["nobody-here/no-such-set", "fix: ",
                                   "offline (HF_HUB_OFFLINE=1) and not in the hub cache"]),
    "missing config": (lab("--responses", "{repo}:harmless:test"),
                       ["no config 'harmless' (configs: harmless-base, helpful-base)", "fix: name one"]),
    "missing split": (lab("--responses", "{repo}:harmless-base:dev"),
                      ["no split 'dev' (splits: train, test)", "fix: name one of them"]),
    "missing split of --human": (lab("--responses", "{repo}:harmless-base:test",
                                     "--human", "{repo}:helpful-base:test"),
                                 ["no split 'test' (splits: train)"]),
    "one part neither config nor split": (lab("--responses", "{repo}:dev"),
                                          ["'dev' is not a config (configs: harmless-base, helpful-base)"]),
    "mapping names no column": (gen("{tmp}/q.csv#prompt=questoin"),
                                ["q.csv", "column mapping prompt=questoin: no column 'questoin' (columns: "
                                 "question, category)",
                                 "fix: map one of the columns there are, e.g. prompt=question"]),
    "--columns names no column": (gen("{tmp}/q.csv", "--columns", "prompt=qestion"),
                                  ["no column 'qestion'"]),
    "--columns bad syntax": (gen("{tmp}/q.csv", "--columns", "prompt"), ["'prompt' is not TARGET=COLUMN"]),
    "parquet that is not parquet": (gen("{tmp}/fake.parquet"),
                                    ["fake.parquet: not a readable parquet file", "fix: check the file"]),
    "unknown prompt shape": (gen("{tmp}/odd.csv"),
                             ["odd.csv:row 1: no prompt: columns text, score", "#prompt=text"]),
    "unknown pair shape": (lab("--responses", "{tmp}/odd_pairs.csv", "--columns", "chosen=good"),
                           ["odd_pairs.csv#chosen=good:row 1: not a preference pair"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_source_is_one_line_and_keeps_outputs(case, tmp_path, tiny_model_dir, capsys, monkeypatch,
                                                  datasets_cache):  # noqa: F811
    argv, needles = CASES[case]
    repo = hub_like_folder(tmp_path / "hh")
    (tmp_path / "q.csv").write_text("question,category\nHow do I bake bread?,food\n")
    (tmp_path / "fake.parquet").write_text("question\nnot parquet at all\n")
    (tmp_path / "odd.csv").write_text("text,score\nhello,1\n")
    (tmp_path / "odd_pairs.csv").write_text("question,good,bad\nq,a,b\n")
    for name, text in SEEDED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    args = [a.format(tmp=tmp_path, model=tiny_model_dir, repo=repo) for a in argv]
    code, _, err = run_cli(args, capsys, monkeypatch)
    one_line_error(code, err, *needles)
    for name, text in SEEDED.items():
        assert (tmp_path / name).read_text() == text, name
