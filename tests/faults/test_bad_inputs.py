"""One table of bad inputs across constitutions, prompt files, preference files, recipes and CLI options.

Each row writes its files, runs ``cai ARGV`` in-process through
:func:`cai.cli.main` (the real error handling: one ``error: ...`` line, exit 2)
and checks: exit code != 0, exactly one line on stderr, no traceback, the line
names the file/line/field and says ``(fix: ...)``, and outputs that existed
before (a seeded ``out.jsonl``, critique and label run folders) are
byte-identical afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.helpers.cli import run_cli

PROMPT = '{"prompt": "How do I bake bread?"}\n'
GOOD_CONST = (
    'name: t\nversion: "1"\nprinciples:\n'
    "  - id: a\n    critique: Is it harmful?\n    revision: Make it harmless.\n"
)
PAIR = {"prompt": "q", "chosen": "yes", "rejected": "no"}
SEEDED = {  # earlier output that no failed run may touch
    "out.jsonl": '{"id": "seed-1", "note": "an earlier answer"}\n',
    "run/revisions.jsonl": '{"id": "seed-2", "note": "an earlier trace"}\n',
    "run/sft.jsonl": '{"id": "seed-3"}\n',
    "lab/labels.jsonl": '{"id": "seed-4", "note": "an earlier label"}\n',
    "lab/preferences.jsonl": '{"id": "seed-5"}\n',
}


@dataclass
class Row:
    id: str
    argv: list[str]
    needles: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    late: bool = False  # only found once work started: progress lines may come first, the error line last


def gen(*extra: str) -> list[str]:
    """``cai generate`` on the tiny model into the seeded ``out.jsonl``."""
    return ["generate", "-p", "{tmp}/p.jsonl", "-o", "{tmp}/out.jsonl", "-m", "{model}",
            "--max-new-tokens", "2", *extra]


def crit(const: str) -> list[str]:
    return ["critique", "-p", "{tmp}/p.jsonl", "-c", const, "-m", "{model}", "-o", "{tmp}/run"]


def label_responses(name: str, *extra: str) -> list[str]:
    return ["label", "--responses", name, "-m", "{model}", "-o", "{tmp}/lab", *extra]


def jl(*objs: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


ROWS = [
    # --- constitutions
    Row("const-malformed-yaml", crit("{tmp}/c.yaml"), ["c.yaml:5", "malformed YAML"],
        {"c.yaml": 'name: t\nversion: "1"\nprinciples:\n  - id: a\n    critique: a: b\n    revision: r\n'}),
    Row("const-unclosed-bracket", crit("{tmp}/c.yaml"), ["c.yaml:8", "starts at line 7"],
        {"c.yaml": GOOD_CONST + "  - id: [b\n"}),
    Row("const-wrong-type", crit("{tmp}/c.yaml"), ["c.yaml:5", "principles.0.critique"],
        {"c.yaml": 'name: t\nversion: "1"\nprinciples:\n  - id: a\n    critique: [1, 2]\n    revision: r\n'}),
    Row("const-unknown-key", crit("{tmp}/c.yaml"), ["c.yaml:7", "principles.0.critiqe"],
        {"c.yaml": GOOD_CONST + "    critiqe: typo\n"}),
    Row("const-duplicate-id", crit("{tmp}/c.yaml"), ["c.yaml:7", "duplicate principle id 'a'"],
        {"c.yaml": GOOD_CONST + "  - id: a\n    critique: c\n    revision: r\n"}),
    Row("const-extends-cycle", crit("{tmp}/c1.yaml"), ["c1.yaml", "c2.yaml", "cycle"],
        {"c1.yaml": "extends: [c2]\n", "c2.yaml": "extends: [c1]\n"}),
    Row("const-empty", crit("{tmp}/c.yaml"), ["c.yaml:1", "empty"], {"c.yaml": ""}),
    Row("const-not-utf8", crit("{tmp}/c.yaml"), ["c.yaml:3", "UTF-8"],
        {"c.yaml": b'name: t\nversion: "1"\ndescription: caf\xe9\n'}),
    Row("const-python-tag", crit("{tmp}/c.yaml"), ["c.yaml:1", "tag"],
        {"c.yaml": "name: !!python/object/apply:os.system ['echo pwned']\n"}),
    Row("const-missing", crit("{tmp}/none.yaml"), ["none.yaml"]),
    # --- prompt files
    Row("prompts-empty", gen(), ["p.jsonl", "no prompts"], {"p.jsonl": ""}),
    Row("prompts-not-utf8", gen(), ["p.jsonl:2", "UTF-8"],
        {"p.jsonl": PROMPT.encode() + b'{"prompt": "caf\xe9"}\n'}),
    Row("prompts-truncated-line", gen(), ["p.jsonl:2", "cut off"],
        {"p.jsonl": PROMPT + '{"prompt": "How do'}),
    Row("prompts-not-json", gen(), ["p.jsonl:2", "not valid JSON"], {"p.jsonl": PROMPT + "prompt: hi\n"}),
    Row("prompts-not-object", gen(), ["p.jsonl:1", "JSON object"], {"p.jsonl": '["hi"]\n'}),
    Row("prompts-wrong-type", gen(), ["p.jsonl:2", "prompt"], {"p.jsonl": PROMPT + '{"prompt": 5}\n'}),
    Row("prompts-ends-with-assistant", gen(), ["p.jsonl:1", "prompt", "user turn"],
        {"p.jsonl": jl({"prompt": [{"role": "user", "content": "a"},
                                   {"role": "assistant", "content": "b"}]})}),
    Row("prompts-bad-role", gen(), ["p.jsonl:1", "prompt", "role"],
        {"p.jsonl": jl({"prompt": [{"role": "robot", "content": "a"}]})}),
    Row("prompts-no-prompt-key", gen(), ["p.jsonl:1", "prompt"], {"p.jsonl": '{"text": "hi"}\n'}),
    Row("prompts-duplicate-ids", gen(), ["p.jsonl:2", "duplicate", "x1"],
        {"p.jsonl": jl({"prompt": "a", "id": "x1"}, {"prompt": "b", "id": "x1"})}),
    Row("prompts-missing-file", ["generate", "-p", "{tmp}/none.jsonl", "-o", "{tmp}/out.jsonl"],
        ["none.jsonl", "no such file"]),
    # --- preference / answer files
    Row("pair-chosen-equals-rejected", label_responses("{tmp}/pairs.jsonl"),
        ["pairs.jsonl:2", "chosen equals rejected"], {"pairs.jsonl": jl(PAIR, {**PAIR, "rejected": "yes"})}),
    Row("pair-p-chosen-out-of-range", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:1", "p_chosen"],
        {"pairs.jsonl": jl({**PAIR, "p_chosen": 1.5})}),
    Row("pair-missing-rejected", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:2", "rejected"],
        {"pairs.jsonl": jl(PAIR, {"prompt": "q2", "chosen": "a"})}),
    Row("pair-empty-rejected", label_responses("{tmp}/pairs.jsonl"),
        ["pairs.jsonl:1", "rejected", "assistant"], {"pairs.jsonl": jl({**PAIR, "rejected": []})}),
    Row("pair-unknown-key", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:1", "chozen"],
        {"pairs.jsonl": jl({**PAIR, "chozen": "x"})}),
    Row("pair-truncated-line", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:2", "cut off"],
        {"pairs.jsonl": jl(PAIR) + '{"prompt": "q", "chosen": "ye'}),
    Row("pair-not-utf8", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:2", "UTF-8"],
        {"pairs.jsonl": jl(PAIR).encode() + b'{"prompt": "q\xff", "chosen": "a", "rejected": "b"}\n'}),
    Row("responses-neither-shape", label_responses("{tmp}/pairs.jsonl"), ["pairs.jsonl:1", "neither a pair"],
        {"pairs.jsonl": jl({"prompt": "q", "answer": "a"})}),
    Row("human-pairs-bad-weight", ["label", "-p", "{tmp}/p.jsonl", "--human", "{tmp}/h.jsonl",
                                   "-m", "{model}", "-o", "{tmp}/lab"], ["h.jsonl:1", "weight"],
        {"p.jsonl": PROMPT, "h.jsonl": jl({**PAIR, "weight": -1})}),
    # --- CLI options and models
    Row("opt-negative-temperature", gen("--temperature", "-1"), ["temperature", "greater than or equal to 0"],
        {"p.jsonl": PROMPT}),
    Row("opt-zero-samples", gen("--n", "0"), ["n:", "greater than or equal to 1"], {"p.jsonl": PROMPT}),
    Row("opt-unknown-backend", gen("--backend", "vllm"), ["vllm", "hf", "openai"], {"p.jsonl": PROMPT}),
    Row("opt-openai-without-url", gen("--backend", "openai"), ["--base-url"], {"p.jsonl": PROMPT}),
    Row("opt-bad-url", gen("--backend", "openai", "--base-url", "localhost:8000/v1"),
        ["localhost:8000/v1", "http://"], {"p.jsonl": PROMPT}),
    Row("opt-unreachable-url",
        gen("--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"),
        ["http://127.0.0.1:9/v1", "connection refused", "rerun"], {"p.jsonl": PROMPT}, late=True),
    Row("opt-missing-api-key", gen("--backend", "openai", "--base-url", "https://api.example.invalid/v1",
                                   "--api-key-env", "CAI_TEST_UNSET_KEY"),
        ["CAI_TEST_UNSET_KEY", "missing API key"], {"p.jsonl": PROMPT}),
    Row("opt-sft-round-out-of-range", [*crit("harmless"), "--rounds", "1", "--sft-round", "2"],
        ["--sft-round 2"], {"p.jsonl": PROMPT}),
    Row("model-without-chat-template",
        ["generate", "-p", "{tmp}/p.jsonl", "-o", "{tmp}/out.jsonl", "-m", "{nochat}"],
        ["chat template", "--chat-template"], {"p.jsonl": PROMPT}),
    Row("chat-template-missing-file", gen("--chat-template", "{tmp}/tmpl.jinja"),
        ["tmpl.jinja", "no such file"], {"p.jsonl": PROMPT}),
    Row("model-missing-path", gen()[:-4] + ["-m", "{tmp}/no-model"], ["no-model"], {"p.jsonl": PROMPT}),
    Row("output-is-a-directory", ["generate", "-p", "{tmp}/p.jsonl", "-o", "{tmp}/lab", "-m", "{model}"],
        ["lab", "directory"], {"p.jsonl": PROMPT}),
    Row("output-locked-by-live-run", gen(), ["out.jsonl", "pid 1"],
        {"p.jsonl": PROMPT, "out.jsonl.lock": "1\n"}),
    Row("output-corrupt-line", gen(), ["out.jsonl:2", "not valid JSON"],
        {"p.jsonl": PROMPT, "out.jsonl": '{"id": "seed-1"}\n{oops\n{"id": "seed-9"}\n'}),
    # --- recipes (`cai run`, validated before anything runs)
    Row("recipe-malformed-yaml", ["run", "{tmp}/r.yaml", "--dry-run"], ["r.yaml:3", "starts at line 2"],
        {"r.yaml": "name: r\nprompts: {redteam: [p.jsonl\n"}),
    Row("recipe-unknown-key", ["run", "{tmp}/r.yaml", "--dry-run"], ["r.yaml:3", "critque"],
        {"r.yaml": "name: r\nprompts: {redteam: [p.jsonl]}\ncritque: {rounds: 1}\n", "p.jsonl": PROMPT}),
    Row("recipe-wrong-type", ["run", "{tmp}/r.yaml", "--dry-run"], ["r.yaml:4", "rounds"],
        {"r.yaml": "name: r\nprompts: {redteam: [p.jsonl]}\ncritique:\n  rounds: many\n", "p.jsonl": PROMPT}),
    Row("recipe-python-tag", ["run", "{tmp}/r.yaml", "--dry-run"], ["r.yaml:1", "tag"],
        {"r.yaml": "name: !!python/object/apply:os.system ['echo pwned']\n"}),
]


def test_table_is_big_and_distinct():
    assert len(ROWS) >= 25 and len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line(row: Row, tmp_path, capsys, monkeypatch, tiny_model_dir,
                               tiny_model_no_template_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CAI_TEST_UNSET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    files = {**SEEDED, "p.jsonl": PROMPT, **row.files}
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    subs = {"{tmp}": str(tmp_path), "{model}": str(tiny_model_dir),
            "{nochat}": str(tiny_model_no_template_dir)}
    argv = []
    for a in row.argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    code, out, err = run_cli(argv, capsys, monkeypatch)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, (out, err)
    assert "Traceback" not in err, err
    if row.late:
        assert sum(ln.startswith("error:") for ln in lines) == 1, err
    else:
        assert len(lines) == 1, err
    line = lines[-1]
    assert line.startswith("error: ") and "(fix: " in line, line
    for needle in row.needles:
        assert needle.replace("{tmp}", str(tmp_path)) in line, (needle, line)
    after = {p: p.read_bytes() for p in before}
    assert after == before, "a failed run changed files that were there before"
