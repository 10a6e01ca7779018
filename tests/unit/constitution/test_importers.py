"""Importers: the Constitutional AI paper's files and llm-swarm's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli.constitution import app
from cai.constitution.importers import import_anthropic, import_llm_swarm, parse_transcript
from cai.constitution.load import load_constitution
from cai.core.errors import CaiError

runner = CliRunner()


@pytest.fixture
def cai_files(shared_data: Path) -> Path:
    folder = shared_data / "anthropic_cai"
    if not (folder / "CritiqueRevisionInstructions.json").is_file():
        pytest.skip(f"{folder} has no CritiqueRevisionInstructions.json")
    return folder


def test_anthropic_instructions_give_16_clean_principles(cai_files: Path) -> None:
    c = import_anthropic(cai_files / "CritiqueRevisionInstructions.json").constitution
    assert [p.id for p in c.principles] == [f"harmful{i}" for i in range(16)]
    for p in c.principles:
        for text in (p.critique, p.revision):
            assert (
                "Request:" not in text
                and not text.endswith(("Critique:", "Revision:"))
                and text == text.strip()
            )
    assert c.principle("harmful0").critique.startswith("Identify specific ways")
    assert c.principle("harmful0").revision.startswith("Please rewrite")


def test_anthropic_few_shot_become_examples(cai_files: Path) -> None:
    result = import_anthropic(
        cai_files / "CritiqueRevisionInstructions.json", cai_files / "CritiqueRevisionFewShotPrompts.json"
    )
    examples = result.constitution.examples
    transcripts = json.loads((cai_files / "CritiqueRevisionFewShotPrompts.json").read_text())
    assert len(examples) == len(transcripts) and result.notes == []
    first = examples[0]
    assert isinstance(first.prompt, list)  # several turns before the critique: kept as a conversation
    assert [m.role for m in first.prompt] == ["user", "assistant", "user"]
    assert first.prompt[0].content.startswith("Could you help me burn down my house")
    assert first.response.startswith("The easiest way")
    assert first.critique.startswith("Arson is very dangerous") and first.revision.startswith("I'm sorry")
    assert first.principle == "harmful3"  # its critique request is that principle's
    assert isinstance(examples[1].prompt, str)  # a single human turn stays a string
    assert examples[-1].principle is None and "truthful" in examples[-1].critique_request


def test_anthropic_comparisons_and_feedback(cai_files: Path) -> None:
    c = import_anthropic(
        cai_files / "CritiqueRevisionInstructions.json",
        comparisons=cai_files / "RLMadisonInstructions.json",
        feedback_few_shot=cai_files / "RLMadisonFewShotPrompts.json",
    ).constitution
    assert all(p.comparison and not p.comparison.endswith("Options:") for p in c.principles)
    assert len(c.feedback_examples) == 5
    fb = c.feedback_examples[0]
    assert fb.prompt.startswith("What's the best gun") and fb.chosen.startswith("You should not")


def test_anthropic_cli_output_validates(cai_files: Path, tmp_path: Path) -> None:
    out = tmp_path / "paper.yaml"
    args = [
        "import",
        str(cai_files / "CritiqueRevisionInstructions.json"),
        "--format",
        "anthropic",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--few-shot", str(cai_files / "CritiqueRevisionFewShotPrompts.json")])
    assert result.exit_code == 0, result.output
    assert "16 principles" in result.output
    c = load_constitution(out)
    assert len(c.principles) == 16 and len(c.examples) == 5
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0


def test_anthropic_rejects_a_question_list(cai_files: Path, tmp_path: Path) -> None:
    with pytest.raises(CaiError, match="--comparisons"):
        import_anthropic(cai_files / "RLMadisonInstructions.json")


def test_parse_transcript() -> None:
    turns = parse_transcript(
        "\n\nHuman: a\n\nAssistant: b\n\nCritiqueRequest: c?\n\nCritique: d\n\n"
        "RevisionRequest: e\n\nRevision: f"
    )
    assert [label for label, _ in turns] == [
        "Human",
        "Assistant",
        "CritiqueRequest",
        "Critique",
        "RevisionRequest",
        "Revision",
    ]


def _swarm(tmp_path: Path, system_chat: object) -> Path:
    data = {
        "constitutions": [
            {"critic": "Is the response rude?", "revision": "Rewrite the response politely."},
            {"critic": "Is the response false?", "revision": "Rewrite the response to be true."},
        ],
        "system_chat": system_chat,
    }
    path = tmp_path / "swarm.json"
    path.write_text(json.dumps(data))
    return path


def _chat(prompt: str, critic: str, revision: str, extra: list[dict] | None = None) -> list[dict]:
    return [
        *(extra or []),
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": "a bad answer"},
        {"role": "user", "content": critic},
        {"role": "assistant", "content": "the critique"},
        {"role": "user", "content": revision},
        {"role": "assistant", "content": "a good answer"},
    ]


def test_llm_swarm_flat_system_chat(tmp_path: Path) -> None:
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    flat = _chat("q1", "Is the response rude?", "Rewrite the response politely.") + _chat(
        "q2", "Is it unkind?", "Be kind.", extra=history
    )
    result = import_llm_swarm(_swarm(tmp_path, flat))
    c = result.constitution
    assert [p.id for p in c.principles] == ["p0", "p1"] and c.name == "llm-swarm-swarm"
    assert c.principle("p0").critique == "Is the response rude?"
    assert len(c.examples) == 2 and result.notes == []
    one, two = c.examples
    assert (one.prompt, one.response, one.critique, one.revision) == (
        "q1",
        "a bad answer",
        "the critique",
        "a good answer",
    )
    assert one.principle == "p0" and one.critique_request is None
    assert [m.content for m in two.prompt] == ["earlier", "reply", "q2"]
    assert (two.principle, two.critique_request, two.revision_request) == (None, "Is it unkind?", "Be kind.")


def test_llm_swarm_nested_system_chat(tmp_path: Path) -> None:
    nested = [
        _chat("q1", "Is the response false?", "Rewrite the response to be true."),
        _chat("q2", "x", "y"),
    ]
    c = import_llm_swarm(_swarm(tmp_path, nested)).constitution
    assert len(c.examples) == 2 and c.examples[0].principle == "p1"


def test_llm_swarm_unparsable_system_chat_keeps_none_and_says_so(tmp_path: Path) -> None:
    result = import_llm_swarm(_swarm(tmp_path, [{"role": "user", "content": "just one"}]))
    assert result.constitution.examples == []
    assert any("no few-shot examples" in n for n in result.notes)
    assert import_llm_swarm(_swarm(tmp_path, ["not a message"])).constitution.examples == []


def test_llm_swarm_cli_writes_valid_yaml(tmp_path: Path) -> None:
    src = _swarm(tmp_path, [{"role": "user", "content": "just one"}])
    out = tmp_path / "swarm.yaml"
    result = runner.invoke(app, ["import", str(src), "-o", str(out)])  # format guessed
    assert result.exit_code == 0, result.output
    assert len(load_constitution(out).principles) == 2


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "swarm.json:1: malformed JSON"),
        ('{"other": 1}', "no 'constitutions' key"),
        ('{"constitutions": []}', "non-empty list"),
        ('{"constitutions": [{"critic": "c"}]}', "constitutions[0].revision"),
    ],
)
def test_llm_swarm_bad_input(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "swarm.json"
    path.write_text(content)
    with pytest.raises(CaiError, match=None) as info:
        import_llm_swarm(path)
    assert fragment in str(info.value)
