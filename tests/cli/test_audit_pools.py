"""`cai audit pools` end to end on small files written here."""

from __future__ import annotations

import json

from cai.core.records import LabelRecord, Message, Provenance
from tests.helpers.cli import one_line_error, run_cli


def write_pools(tmp_path):
    """eu and us label the same 10 pairs; us flips pairs 0-3. eu: 10 rows; us: 5 in one file, 5 in another."""
    eu = [{"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}", "pool": "eu"}
          for i in range(10)]
    us = [{"prompt": f"question {i}", "chosen": f"bad {i}" if i < 4 else f"good {i}",
           "rejected": f"good {i}" if i < 4 else f"bad {i}", "pool": "us"} for i in range(10)]
    files = [tmp_path / "eu.jsonl", tmp_path / "us1.jsonl", tmp_path / "us2.jsonl"]
    for path, rows in zip(files, (eu, us[:5], us[5:])):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return files


def test_audit_prints_the_pools_the_disagreements_and_writes_audit_json(tmp_path, capsys, monkeypatch):
    files = write_pools(tmp_path)
    m = lambda t: [Message(role="assistant", content=t)]  # noqa: E731
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(LabelRecord(
        id=f"l{i}", pair_id=f"p{i}", prompt=[Message(role="user", content=f"question {i}")],
        answer_a=m(f"bad {i}"), answer_b=m(f"good {i}"), status="ok", p_a=0.1, principle_ids=[],
        judgements=[], provenance=Provenance()).model_dump_json() + "\n" for i in range(10)))
    out = tmp_path / "out"
    argv = ["audit", "pools", *(a for f in files for a in ("--human", str(f))), "--labels", str(labels),
            "--pool-weight", "eu=1", "--pool-weight", "us=0.5", "--show", "2", "-o", str(out)]
    code, stdout, err = run_cli(argv, capsys, monkeypatch)
    assert code == 0, err
    assert "eu vs us: 60.0%" in stdout and "pairs where pools disagree: 4 (first 2)" in stdout
    assert "weights: eu=1, us=0.5" in stdout
    audit = json.loads((out / "audit.json").read_text())
    assert audit["kind"] == "pools" and audit["agreement"]["n_disagreements"] == 4
    assert {d["prompt"] for d in audit["agreement"]["disagreements"]} == {f"question {i}" for i in range(4)}
    assert audit["weights"]["us"]["weight"] == 5.0 and audit["weights"]["eu"]["weight"] == 10.0
    assert audit["ai"]["pools"]["eu"]["rate"] == 1.0 and audit["ai"]["pools"]["us"]["rate"] == 0.6

    code, stdout, err = run_cli(["audit", "pools", "--human", str(files[0]), "--human", str(files[1]),
                                 "--balance", "equal", "-o", str(out)], capsys, monkeypatch)
    assert code == 0, err
    audit = json.loads((out / "audit.json").read_text())
    # eu 10 rows, us 5: T = 15, each pool totals 7.5
    assert audit["weights"]["eu"]["weight"] == 7.5 and audit["weights"]["us"]["mean_weight"] == 1.5
    assert audit["ai"] is None and "no --labels" in stdout


def test_bad_options_are_one_line_errors(tmp_path, capsys, monkeypatch):
    files = write_pools(tmp_path)
    base = ["audit", "pools", "--human", str(files[0]), "-o", str(tmp_path / "out")]
    for extra, needles in ((["--pool-weight", "eu"], ["--pool-weight 'eu'"]),
                           (["--balance", "half"], ["--balance 'half'"]),
                           (["--pool-weight", "us=1"], ["pool 'eu'", "no pool weight"])):
        one_line_error(*run_cli([*base, *extra], capsys, monkeypatch)[::2], *needles)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "pool": 3}\n')
    one_line_error(*run_cli(["audit", "pools", "--human", str(bad), "-o", str(tmp_path / "o")],
                            capsys, monkeypatch)[::2], "bad.jsonl:1", "pool")
