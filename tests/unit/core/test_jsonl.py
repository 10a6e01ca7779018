"""cai.core.jsonl: strict JSONL reading, crash-safe resumable writing, id splits."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai.core.errors import CaiError
from cai.core.jsonl import JsonlWriter, read_jsonl, read_prompts, read_records
from cai.core.records import PromptRecord
from cai.stages.export import split_by_id


def _rec(i: int, size: int = 10) -> dict:
    return {"id": f"r{i:05d}", "prompt": "x" * size}


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- writer


def test_write_and_resume(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    with JsonlWriter(path) as w:
        assert [w.write(_rec(i)) for i in range(3)] == [True, True, True]
        assert len(w) == 3 and "r00001" in w
    with JsonlWriter(path) as w:
        assert w.ids == {"r00000", "r00001", "r00002"}
        assert w.write(_rec(1)) is False  # finished id: skipped
        assert w.write(PromptRecord(prompt="new", id="r00009")) is True
    assert [r["id"] for r in _lines(path)] == ["r00000", "r00001", "r00002", "r00009"]
    assert not (tmp_path / "sub" / "out.jsonl.lock").exists()


def test_duplicate_id_written_once(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        assert w.write(_rec(0)) is True
        assert w.write({"id": "r00000", "prompt": "different"}) is False
    assert len(_lines(path)) == 1


def test_resume_false_starts_fresh(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        w.write(_rec(0))
    with caplog.at_level(logging.WARNING, logger="cai.core.jsonl"), JsonlWriter(path, resume=False) as w:
        assert len(w) == 0
        w.write(_rec(1))
    assert [r["id"] for r in _lines(path)] == ["r00001"]
    assert "starting fresh" in caplog.text


def test_write_needs_an_id(tmp_path):
    with JsonlWriter(tmp_path / "out.jsonl") as w, pytest.raises(ValueError, match="id"):
        w.write({"prompt": "no id"})


def test_torn_line_repaired(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path) as w:
        for i in range(3):
            w.write(_rec(i))
    whole = path.read_bytes()
    fragment = json.dumps(_rec(3)).encode()[:17]
    with path.open("ab") as fh:
        fh.write(fragment)
    with pytest.raises(CaiError, match=r"out\.jsonl:4: line is cut off \(torn write\?\)"):
        read_records(path, PromptRecord)

    with caplog.at_level(logging.WARNING, logger="cai.core.jsonl"), JsonlWriter(path) as w:
        assert w.ids == {"r00000", "r00001", "r00002"}
        w.write(_rec(3))
    assert f"moved {len(fragment)} bytes" in caplog.text and "out.jsonl.torn" in caplog.text
    assert path.read_bytes().startswith(whole)
    assert [r.id for r in read_records(path, PromptRecord)] == ["r00000", "r00001", "r00002", "r00003"]
    assert (tmp_path / "out.jsonl.torn").read_bytes() == fragment + b"\n"


def test_torn_fragments_accumulate(tmp_path):
    path = tmp_path / "out.jsonl"
    for frag in (b'{"id": "a', b'{"id": "b", "pr'):
        with path.open("ab") as fh:
            fh.write(frag)
        JsonlWriter(path).close()
    assert (tmp_path / "out.jsonl.torn").read_bytes() == b'{"id": "a\n{"id": "b", "pr\n'
    assert path.read_bytes() == b""


def test_whole_last_line_without_newline_is_kept(tmp_path):
    path = _write(tmp_path / "out.jsonl", '{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "q"}')
    with JsonlWriter(path) as w:
        assert w.ids == {"a", "b"}
        w.write({"id": "c", "prompt": "r"})
    assert [r["id"] for r in _lines(path)] == ["a", "b", "c"]
    assert not (tmp_path / "out.jsonl.torn").exists()


def test_resume_with_bad_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "out.jsonl", '{"id": "a"}\nnot json\n')
    with pytest.raises(CaiError, match=r"out\.jsonl:2: not valid JSON"):
        JsonlWriter(path)
    assert not (tmp_path / "out.jsonl.lock").exists()  # lock released on failure
    _write(path, '{"id": "a"}\n{"prompt": "no id"}\n')
    with pytest.raises(CaiError, match=r"out\.jsonl:2: id: missing"):
        JsonlWriter(path)


def test_lock_held_by_live_process(tmp_path):
    path = tmp_path / "out.jsonl"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "out.jsonl.lock").write_text(f"{sleeper.pid}\n")
        with pytest.raises(CaiError, match=rf"being written by another run \(pid {sleeper.pid}\)"):
            JsonlWriter(path)
        assert (tmp_path / "out.jsonl.lock").read_text().strip() == str(sleeper.pid)  # not ours: kept
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_taken_over(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: the pid is gone
    (tmp_path / "out.jsonl.lock").write_text(f"{dead.pid}\n")
    with caplog.at_level(logging.WARNING, logger="cai.core.jsonl"), JsonlWriter(path) as w:
        assert (tmp_path / "out.jsonl.lock").read_text().strip() == str(os.getpid())
        w.write(_rec(0))
    assert "stale lock" in caplog.text
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_empty_lock_fresh_is_busy_old_is_stale(tmp_path):
    path, lock = tmp_path / "out.jsonl", tmp_path / "out.jsonl.lock"
    lock.write_text("")  # another run created it and has not written its pid yet
    with pytest.raises(CaiError, match=r"pid unknown"):
        JsonlWriter(path)
    os.utime(lock, (time.time() - 60, time.time() - 60))
    JsonlWriter(path).close()
    assert not lock.exists()


def test_failed_write_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    real_write = os.write
    with JsonlWriter(path) as w:
        w.write(_rec(0))

        def half_then_full_disk(fd, data):
            if len(data) > 20:
                return real_write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_full_disk)
        with pytest.raises(CaiError, match="No space left on device"):
            w.write(_rec(1, size=100))
        monkeypatch.setattr(os, "write", real_write)
        assert "r00001" not in w
        assert w.write(_rec(1)) is True
    assert [r["id"] for r in _lines(path)] == ["r00000", "r00001"]


def test_second_writer_in_same_process_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path), pytest.raises(CaiError, match="already open"):
        JsonlWriter(path)


def test_close_keeps_a_lock_that_is_not_ours(tmp_path):
    path = tmp_path / "out.jsonl"
    w = JsonlWriter(path)
    (tmp_path / "out.jsonl.lock").write_text("1\n")  # someone replaced it
    w.close()
    w.close()
    assert (tmp_path / "out.jsonl.lock").read_text() == "1\n"


_CHILD = textwrap.dedent(
    """
    import sys
    import time
    from cai.core.jsonl import JsonlWriter

    path, n = sys.argv[1], int(sys.argv[2])
    with JsonlWriter(path) as w:
        print("ready", flush=True)
        for i in range(n):
            rid = f"r{i:05d}"
            if rid not in w:
                w.write({"id": rid, "prompt": rid * 10000})
                time.sleep(0.001)  # a whole run takes over 0.6 s, so every kill lands mid-run
    """
)


def test_sigkill_then_resume_loses_nothing(tmp_path):
    path, n = tmp_path / "out.jsonl", 600
    rng = random.Random(1234)
    cmd = [sys.executable, "-c", _CHILD, str(path), str(n)]
    lines_after_kill, fragments = [], []
    for k in range(4):
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"  # lock taken, resume done: now writing
        time.sleep(rng.uniform(0.0, 0.14))  # 4 x 0.14 s < 600 records x 1 ms
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        lines_after_kill.append(path.read_bytes().count(b"\n"))
        if k % 2 == 0 and path.read_bytes().endswith(b"\n"):
            # the kernel seldom tears one write(), so also leave the torn tail a kill mid-write would
            line = json.dumps({"id": f"torn{k}", "prompt": "y" * 5000}).encode()
            fragments.append(line[: rng.randrange(1, len(line) - 1)])
            with path.open("ab") as fh:
                fh.write(fragments[-1])
    assert lines_after_kill[-1] < n  # the kills landed mid-run
    subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.DEVNULL)
    ids = [r["id"] for r in _lines(path)]  # every line parses
    assert sorted(ids) == [f"r{i:05d}" for i in range(n)]  # every id exactly once
    assert [r.id for r in read_records(path, PromptRecord)] == ids
    assert not (tmp_path / "out.jsonl.lock").exists()
    torn = tmp_path / "out.jsonl.torn"
    torn_lines = torn.read_bytes().split(b"\n")[:-1] if torn.exists() else []
    assert set(fragments) <= set(torn_lines)  # every torn byte kept
    for frag in torn_lines:  # (a kill may also tear a write itself)
        with pytest.raises(ValueError):
            json.loads(frag)


# --------------------------------------------------------------------------- reader


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"prompt": "a"}\nnot json\n', r"f\.jsonl:2: not valid JSON: Expecting value"),
        (b'{"prompt": "a"}\n[1, 2]\n', r"f\.jsonl:2: expected a JSON object, got list"),
        (b'{"prompt": "a"}\n\n"s"\n', r"f\.jsonl:3: expected a JSON object, got string"),
        (b'{"prompt": "a"}\n{"id": "x"}\n', r"f\.jsonl:2: prompt: Field required"),
        (b'{"prompt": ""}\n', r"f\.jsonl:1: prompt: Value error, prompt is empty"),
        (b'{"prompt": "a"}\n{"prompt": "\xff\xfe"}\n', r"f\.jsonl:2: not UTF-8 \(byte 0xff at column 13\)"),
        (b'{"prompt": "a"}\n{"prompt": "b', r"f\.jsonl:2: line is cut off \(torn write\?\).*fix: delete"),
        (b'{"prompt": "a"}\n{"prompt": "\xc3', r"f\.jsonl:2: line is cut off \(torn write\?\)"),
        (b'{"prompt": "a", "metadata": 5, "x": 1}\n', r"f\.jsonl:1: "),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, content, expected):
    path = _write(tmp_path / "f.jsonl", content)
    with pytest.raises(CaiError, match=expected) as info:
        read_records(path, PromptRecord)
    assert "\n" not in str(info.value)


def test_reader_missing_file_and_directory(tmp_path):
    with pytest.raises(CaiError, match=r"nope\.jsonl: no such file"):
        read_jsonl(tmp_path / "nope.jsonl", PromptRecord)  # fails at once, not on first next()
    with pytest.raises(CaiError, match="is a directory"):
        read_records(tmp_path, PromptRecord)


def test_reader_blank_lines_and_unterminated_last_line(tmp_path):
    path = _write(tmp_path / "f.jsonl", '\n{"prompt": "a"}\n   \n\r\n{"prompt": "b", "label": "safe"}')
    recs = read_records(path, PromptRecord)
    assert [r.prompt for r in recs] == ["a", "b"]
    assert recs[1].metadata == {"label": "safe"}
    assert [r.prompt for r in read_jsonl(path, PromptRecord)] == ["a", "b"]


def test_reader_bom_and_crlf(tmp_path):
    path = _write(tmp_path / "f.jsonl", b'\xef\xbb\xbf{"prompt": "a"}\r\n{"prompt": "b"}\r\n')
    assert [r.prompt for r in read_records(path, PromptRecord)] == ["a", "b"]


def test_read_prompts(tmp_path):
    assert read_prompts(_write(tmp_path / "p.jsonl", '{"prompt": "hi"}\n'))[0].prompt == "hi"
    with pytest.raises(CaiError, match=r"e\.jsonl: no prompts"):
        read_prompts(_write(tmp_path / "e.jsonl", "\n\n"))


def test_read_shared_prompts(shared_data):
    prompts = read_prompts(shared_data / "xstest_dev.jsonl")
    assert len(prompts) == 221 and {p.metadata["label"] for p in prompts} == {"safe", "unsafe"}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
_promptish = st.fixed_dictionaries(
    {"prompt": _json_values | st.text(max_size=5)},
    optional={"id": _json_values, "metadata": _json_values, "label": _json_values},
).map(json.dumps)
_line = st.text(max_size=30) | _promptish | st.binary(max_size=30).map(lambda b: b.decode("latin-1"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blob=st.binary(max_size=200)
    | st.lists(_line, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
    | st.lists(_promptish, max_size=4).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
)
def test_reader_raises_only_cai_error(tmp_path, blob):
    path = _write(tmp_path / "fuzz.jsonl", blob)
    try:
        for rec in read_jsonl(path, PromptRecord):
            assert isinstance(rec, PromptRecord)
    except CaiError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)


# --------------------------------------------------------------------------- split


def test_split_by_id_is_order_independent():
    recs = [PromptRecord(prompt="p", id=f"id{i}") for i in range(500)]
    train, test = split_by_id(recs, 0.2, seed=3)
    shuffled = recs[:]
    random.Random(0).shuffle(shuffled)
    train2, test2 = split_by_id(shuffled, 0.2, seed=3)
    assert {r.id for r in test} == {r.id for r in test2} and {r.id for r in train} == {r.id for r in train2}
    assert 50 < len(test) < 150
    assert {r.id for r in split_by_id(recs, 0.2, seed=4)[1]} != {r.id for r in test}
    with pytest.raises(CaiError, match="between 0 and 1"):
        split_by_id(recs, 1.5)
