"""The one resume loop: skips what the file has, builds no backend when nothing is missing, and shows an
ETA from the average rate when records arrive in bursts."""

from __future__ import annotations

import re
import time

from pydantic import BaseModel

from cai.core.resume import fill_jsonl


class Row(BaseModel):
    id: str


def _produce(batches: list[list[str]], pause: float = 0.0):
    def produce(backend, done, bar):
        for batch in batches:
            time.sleep(pause)  # a batch's forward passes
            yield from (Row(id=i) for i in batch if not done(i))
    return produce


def test_resume_skips_known_ids_and_builds_nothing_when_complete(tmp_path):
    path, ids = tmp_path / "rows.jsonl", [f"r{k}" for k in range(6)]
    built = []
    first = fill_jsonl(path, ids[:3], lambda: built.append(1), _produce([ids[:3]]), what="row")
    assert (first.before, first.written, first.complete) == (0, 3, True)
    again = fill_jsonl(path, ids, lambda: built.append(1), _produce([ids]), what="row")
    assert (again.before, again.written, again.in_file) == (3, 3, 6)
    done = fill_jsonl(path, ids, lambda: built.append(1), _produce([ids]), what="row")
    assert (done.written, len(built)) == (0, 2)  # nothing missing: no backend built


def test_a_burst_is_drawn_whole_and_its_eta_is_from_the_average_rate(tmp_path, capsys):
    ids = [f"r{k}" for k in range(20)]
    fill_jsonl(tmp_path / "rows.jsonl", ids, lambda: None, _produce([ids[:10], ids[10:]], pause=0.4),
               what="row")
    err = capsys.readouterr().err
    # after the first batch of 10 (0.4 s): 10/20 shown, ETA about 0.4 s, not 19 x 0.4 s from its first row
    shown = re.findall(r"10/20 \[(\d\d):(\d\d)<(\d\d):(\d\d)", err)
    assert shown, err
    assert all(int(m) * 60 + int(s) <= 2 for *_, m, s in shown), shown
