"""The stage runner: skip unchanged stages, re-run what a change touches, never delete outputs."""

from __future__ import annotations

import pytest

from cai.core.errors import CaiError
from cai.run.engine import RunContext, Stage, file_digest, run_pipeline


def make_stages(config: dict, calls: list[str], fail_at: str | None = None):
    def stage(name, deps):
        def run(ctx):
            calls.append(name)
            if name == fail_at:
                raise RuntimeError("boom")
            (ctx.dir(name) / "out.txt").write_text(f"{name}:{config[name]}")
            return {"value": config[name]}

        return Stage(name, deps, lambda ctx: config[name], run)

    return [stage("a", ()), stage("b", ("a",)), stage("c", ("b",))]


def test_second_run_skips_everything(tmp_path):
    config, calls = {"a": 1, "b": 2, "c": 3}, []
    run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    assert calls == ["a", "b", "c"]
    results = run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    assert calls == ["a", "b", "c"] and [r.status for r in results] == ["skipped"] * 3


def test_change_reruns_from_the_changed_stage_and_keeps_old_outputs(tmp_path):
    config, calls = {"a": 1, "b": 2, "c": 3}, []
    run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    old_b = (tmp_path / "b" / "stage.json").read_text()
    config["b"] = 20
    calls.clear()
    results = run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    assert calls == ["b", "c"]
    assert [r.status for r in results] == ["skipped", "ran", "ran"]
    olds = sorted(p.name for p in tmp_path.glob("*.old"))
    assert len(olds) == 2 and olds[0].startswith("b.") and olds[1].startswith("c.")
    assert (tmp_path / olds[0] / "stage.json").read_text() == old_b
    assert (tmp_path / "b" / "out.txt").read_text() == "b:20"


def test_interrupted_stage_resumes_in_place(tmp_path):
    config, calls = {"a": 1, "b": 2, "c": 3}, []
    with pytest.raises(RuntimeError):
        run_pipeline(make_stages(config, calls, fail_at="b"), RunContext(tmp_path))
    (tmp_path / "b" / "partial.jsonl").write_text("kept\n")
    calls.clear()
    run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    assert calls == ["b", "c"]
    assert (tmp_path / "b" / "partial.jsonl").read_text() == "kept\n"  # same key: same folder
    assert not list(tmp_path.glob("*.old"))


def test_from_and_until(tmp_path):
    config, calls = {"a": 1, "b": 2, "c": 3}, []
    with pytest.raises(CaiError, match="needs a first"):
        run_pipeline(make_stages(config, calls), RunContext(tmp_path), start="b")
    run_pipeline(make_stages(config, calls), RunContext(tmp_path), stop="a")
    assert calls == ["a"]
    results = run_pipeline(make_stages(config, calls), RunContext(tmp_path), start="b", stop="b")
    assert calls == ["a", "b"] and [r.status for r in results] == ["not selected", "ran", "not selected"]
    with pytest.raises(CaiError, match="no such stage"):
        run_pipeline(make_stages(config, calls), RunContext(tmp_path), start="zzz")
    with pytest.raises(CaiError, match="comes after"):
        run_pipeline(make_stages(config, calls), RunContext(tmp_path), start="c", stop="a")


def test_force_reruns_a_stage(tmp_path):
    config, calls = {"a": 1, "b": 2, "c": 3}, []
    run_pipeline(make_stages(config, calls), RunContext(tmp_path))
    calls.clear()
    run_pipeline(make_stages(config, calls), RunContext(tmp_path), force=["c"])
    assert calls == ["c"]


def test_file_digest_tracks_content(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("a")
    d1 = file_digest(f)
    f.write_text("b")
    assert file_digest(f) != d1
    assert len(file_digest(tmp_path)) == 16
    with pytest.raises(CaiError):
        file_digest(tmp_path / "missing")
