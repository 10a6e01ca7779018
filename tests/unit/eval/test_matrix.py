"""The segmented evaluation's pieces (cai/eval/matrix.py, cai/eval/report_matrix.py): worked examples of the
verdict, the option parser, answer keys across sets, and the shipped region prompt sets."""

from __future__ import annotations

import base64
import io
import json
from fnmatch import fnmatch
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.core.stats import wilson_interval
from cai.eval import matrix as mx
from cai.eval.segments import summarise

REGIONS = ("eu", "us", "apac")


def f(k: int, n: int = 20):
    return summarise([1.0] * k + [0.0] * (n - k))


def test_verdict_best_and_core_kept_worked_example():
    # refusal on red-team prompts (higher is better), 20 prompts a set
    t = {"core": {"core": f(18), "eu": f(2), "us": f(4)},
         "core+eu": {"core": f(18), "eu": f(19), "us": f(4)},
         "core+us": {"core": f(8), "eu": f(19), "us": f(18)}}
    line = mx.verdict("refusal", t, "core", "core")
    assert line.startswith("core+eu: best on eu: cannot tell (intervals overlap with core+us); "
                           "keeps core: yes")
    # core+us: 18/20 [69.9-97.2] vs 4/20 [8.1-41.6] and 4/20: detectably best; 8/20 on core is below core's
    # 18/20 interval and the intervals are disjoint: lost
    assert wilson_interval(8, 20)[1] < wilson_interval(18, 20)[0]
    assert "core+us: best on us: yes; keeps core: no (40% [22–61] vs core 90% [70–97])" in line
    assert not line.startswith("core:") and " | core:" not in line  # the core model itself is not asked


def test_verdict_lower_is_better_and_beaten():
    # harmful compliance: lower is better; core+eu is detectably worse than core on eu
    t = {"core": {"core": f(1), "eu": f(1)}, "core+eu": {"core": f(1), "eu": f(15)}}
    assert mx.verdict("harmful", t, "core", "core") == (
        "core+eu: best on eu: no (core better); keeps core: yes (5% [1–24] vs core 5% [1–24])")


def test_verdict_cannot_tell_no_signal_and_nothing_to_ask():
    t = {"core": {"core": f(10), "eu": f(10)}, "eu": {"core": f(15), "eu": f(11)}}
    # 15/20 is outside core's [30-70%] but the intervals overlap: cannot tell
    assert "keeps core: cannot tell (75% [53–89] vs core 50% [30–70], intervals overlap)" in mx.verdict(
        "refusal", t, "core", "core")
    t["eu"]["eu"].no_signal = "judge scores constant: sd 0.000"
    assert mx.verdict("harmful", t, "core", "core").startswith("cannot tell")
    assert "nothing to ask" in mx.verdict("refusal", {"base": {"core": f(3), "eu": f(4)}}, "core", "base")


def test_keeps_core_better_counts_as_kept():
    t = {"core": {"core": f(2)}, "x": {"core": f(19)}}
    assert mx.keeps_core("x", "core", "core", t, higher=True).startswith("yes, better")


def test_parse_set_options_folders_and_errors(tmp_path):
    (tmp_path / "eu").mkdir()
    (tmp_path / "eu" / "redteam.jsonl").write_text('{"prompt": "x"}\n')
    assert mx.parse_set_options([f"eu={tmp_path / 'eu'}"]) == {
        "sets": {"eu": {"redteam": str(tmp_path / "eu" / "redteam.jsonl")}}}
    for bad in ("eu", "=x", "eu:=x", "eu:redteam=", "-x:redteam=a"):
        with pytest.raises(CaiError, match="--matrix-set"):
            mx.parse_set_options([bad])
    with pytest.raises(CaiError, match="has a redteam source already"):
        mx.parse_set_options(["eu:redteam=a", "eu:redteam=b"])
    assert mx.matrix_from_options(None) is None
    m = mx.matrix_from_options(["core:redteam=a.jsonl", "eu:lookalike=b.jsonl"])
    assert set(m.sets) == {"core", "eu"} and m.sets["eu"].redteam is None


def test_rows_reusing_ids_across_sets_get_distinct_answer_keys(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": str(i), "prompt": f"{name} {i}"}) + "\n" for i in range(3)))
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "9", "prompt": "a 0"}) + "\n")  # a's first prompt
    spec = mx.MatrixSpec(sets={s: {"redteam": str(tmp_path / f"{s}.jsonl")} for s in "abc"})
    sets = mx.load_matrix(spec, limit=None)
    keys = {s: [p.key() for p in kinds["redteam"]] for s, kinds in sets.items()}
    assert not set(keys["a"]) & set(keys["b"])  # same ids 0..2, different prompts: different answers
    assert keys["c"] == keys["a"][:1]  # the same prompt in two sets is answered once
    assert sets["b"]["redteam"][1].metadata == {"source_id": "1"}
    assert len(mx.matrix_prompts(sets)) == 6
    assert [len(k["redteam"]) for k in mx.load_matrix(spec, limit=2).values()] == [2, 2, 1]


def test_build_matrix_from_answers():
    from cai.core.records import CompletionRecord, Message, PromptRecord, Provenance

    red = [PromptRecord(prompt=f"r{i}") for i in range(4)]
    look = [PromptRecord(prompt="s", label="safe"), PromptRecord(prompt="u", label="unsafe")]

    def ans(p, text):
        return CompletionRecord(id=f"a-{p.prompt}", prompt_id=p.key(), prompt=p.messages(),
                                completion=[Message(role="assistant", content=text)], finish_reason="stop",
                                provenance=Provenance())

    refuse, comply = "I'm sorry, but I can't help with that.", "Sure, here you go."
    answers = {"m": {p.key(): ans(p, refuse if i < 3 else comply) for i, p in enumerate(red)}}
    answers["m"].update({look[0].key(): ans(look[0], refuse), look[1].key(): ans(look[1], comply)})
    table = mx.build_matrix({"eu": {"redteam": red, "lookalike": look}}, ["m"], answers, {}, None)
    assert list(table) == ["refusal", "safe_refusal", "unsafe_refusal"]  # no judgements: no harmful
    r = table["refusal"]["m"]["eu"]
    assert (r.value, r.n) == (0.75, 4) and (r.lo, r.hi) == pytest.approx(wilson_interval(3, 4))
    assert table["safe_refusal"]["m"]["eu"].value == 1.0 and table["unsafe_refusal"]["m"]["eu"].value == 0.0


def test_heatmap_png_decodes_and_markdown_table():
    from PIL import Image

    from cai.eval.report_matrix import heatmap_png, matrix_markdown
    from cai.eval.schema import EvalSummary

    t = {"core": {"core": f(18), "eu": f(2)}, "core+eu": {"core": f(17), "eu": f(19)}}
    img = Image.open(io.BytesIO(base64.b64decode(heatmap_png("refusal", t))))
    img.load()
    assert img.size[0] > 200
    s = EvalSummary(models=[], matrix={"refusal": t}, matrix_verdicts={"refusal": mx.verdict(
        "refusal", t, "core", "core")})
    md = "\n".join(matrix_markdown(s))
    assert "| model | core | eu |" in md and "| core+eu | 85.0% [64.0–94.8] (n=20) |" in md
    assert "Own region, core kept: core+eu: best on eu: yes" in md


@pytest.mark.parametrize("region", REGIONS)
def test_shipped_region_sets_load_with_their_columns(region):
    from cai.core.jsonl import read_prompts
    from cai.eval.answers import check_labels
    from cai.shipped import prompts_dir

    folder = prompts_dir() / "regions" / region
    red, look = read_prompts(folder / "redteam.jsonl"), read_prompts(folder / "lookalike.jsonl")
    check_labels(folder / "lookalike.jsonl", look)
    assert len(red) == 20 and sum(p.metadata["label"] == "safe" for p in look) >= 15
    assert any(p.metadata["label"] == "unsafe" for p in look)
    for p in red + look:
        assert p.metadata["region"] == region and p.metadata["category"], p
    assert len({p.key() for p in red + look}) == len(red) + len(look)  # no duplicate prompt
    assert mx.MatrixSet.model_validate(f"shipped:regions/{region}").redteam == folder / "redteam.jsonl"


def test_region_files_are_package_data():
    import tomllib

    root = Path(__file__).resolve().parents[3]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = data["cai.shipped"]
    files = [p.relative_to(root).as_posix() for p in (root / "examples" / "prompts" / "regions").rglob("*.*")]
    assert len(files) == 7 and all(any(fnmatch(x, g) for g in globs) for x in files)
