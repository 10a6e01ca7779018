"""Source strings: kinds, config/split parts, mappings, and recipe-relative resolution."""

from __future__ import annotations

import pytest

from cai.core.errors import CaiError
from cai.sources.spec import parse_source, resolve_source, with_columns


def test_kinds_of_existing_and_missing_locations(tmp_path):
    (tmp_path / "p.jsonl").write_text("")
    (tmp_path / "p.csv").write_text("prompt\nx\n")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "state.json").write_text("{}")
    (tmp_path / "repo").mkdir()
    assert parse_source(tmp_path / "p.jsonl").is_plain_jsonl
    assert parse_source(str(tmp_path / "p.csv")).kind == "file"
    assert parse_source(str(tmp_path / "saved")).kind == "disk"
    assert parse_source(str(tmp_path / "repo") + ":cfg:test").kind == "folder"
    assert parse_source(str(tmp_path / "missing.jsonl")).kind == "jsonl"  # keeps the reader's 'no such file'
    assert parse_source("runs/nothing/here.txt").kind == "jsonl"
    assert parse_source("org/name").kind == "hub"


def test_an_existing_path_wins_over_the_syntax(tmp_path):
    odd = tmp_path / "a#b:c.jsonl"
    odd.write_text("")
    s = parse_source(str(odd))
    assert (s.kind, s.location, s.columns, s.split) == ("jsonl", str(odd), (), None)


def test_parts_and_mapping(tmp_path):
    (tmp_path / "repo").mkdir()
    s = parse_source(f"{tmp_path / 'repo'}:harmless-base:test#prompt=question,chosen=good")
    assert (s.location, s.config, s.split, s.part) == (str(tmp_path / "repo"), "harmless-base", "test", None)
    assert s.columns == (("prompt", "question"), ("chosen", "good"))
    assert parse_source("org/x::test").split == "test" and parse_source("org/x:cfg:").config == "cfg"
    assert not parse_source(f"{tmp_path / 'p.jsonl'}#prompt=q").is_plain_jsonl


@pytest.mark.parametrize("text, needle", [
    ("org/x:a:b:c", "too many ':' parts"),
    ("org/x:a b", "is not a config or split name"),
    ("q.csv#prompt", "'prompt' is not TARGET=COLUMN"),
    ("q.csv#prompt=a,prompt=b", "'prompt' is mapped twice"),
    ("q.jsonl:train", "a JSONL file has no config or split"),
])
def test_bad_syntax_is_one_line_with_a_fix(text, needle):
    with pytest.raises(CaiError, match="fix: ") as exc:
        parse_source(text)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_with_columns_and_resolve(tmp_path):
    assert with_columns("org/x:cfg", "prompt=q") == "org/x:cfg#prompt=q"
    (tmp_path / "data").mkdir()
    assert resolve_source("data:cfg:test", tmp_path) == f"{tmp_path / 'data'}:cfg:test"
    assert resolve_source("Anthropic/hh-rlhf:harmless-base", tmp_path) == "Anthropic/hh-rlhf:harmless-base"
    assert resolve_source("p.parquet", tmp_path) == str(tmp_path / "p.parquet")
