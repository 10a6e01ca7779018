"""Import constitutions written for other tools into this project's YAML schema.

Two formats:

``anthropic``
    The Constitutional AI paper's ``CritiqueRevisionInstructions.json``: a dict
    ``{"harmful0": {"prompt": ["\\n\\nCritiqueRequest: ...\\n\\nCritique:"],
    "edit_request": "\\n\\nRevisionRequest: ...\\n\\nRevision:"}, ...}``. Each
    entry becomes a principle (its key is the id) with the scaffolding labels
    stripped. Optional companions: the few-shot transcripts
    (``CritiqueRevisionFewShotPrompts.json``) become ``examples``; the comparison
    questions (``RLMadisonInstructions.json``, a list ending in "Options:") become
    the principles' ``comparison`` questions, paired by position; and the
    feedback few-shots (``RLMadisonFewShotPrompts.json``) become
    ``feedback_examples``.
``llm-swarm``
    ``{"constitutions": [{"critic": ..., "revision": ...}], "system_chat": [...]}``
    (or just the list). ``system_chat`` holds few-shot chats of user/assistant
    turns (prompt, answer, critique request, critique, revision request,
    revision), either as one list per chat or flattened into one list; they
    become ``examples`` where they parse, and a note says which did not.

Every import returns an :class:`Imported`: a validated
:class:`~cai.constitution.schema.Constitution` and notes about anything left out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cai.constitution.schema import Constitution, Example, FeedbackExample, Principle
from cai.core.errors import CaiError, pydantic_error_line

FORMATS = ("anthropic", "llm-swarm")
_LABEL = re.compile(r"\n\n(Human|Assistant|CritiqueRequest|Critique|RevisionRequest|Revision):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass
class Imported:
    """An imported constitution and notes about what could not be carried over."""

    constitution: Constitution
    notes: list[str] = field(default_factory=list)


def strip_labels(text: str, request: str, answer: str) -> str:
    """The bare request text inside the paper's ``Request: ...`` / ``Answer:`` scaffolding.

    >>> strip_labels("\\n\\nCritiqueRequest: Is it rude?\\n\\nCritique:", "CritiqueRequest", "Critique")
    'Is it rude?'
    >>> strip_labels("Just text", "CritiqueRequest", "Critique")
    'Just text'
    """
    text = text.strip().removeprefix(f"{request}:").strip()
    return text.removesuffix(f"{answer}:").strip()


def normalize(text: str) -> str:
    """Collapse whitespace, for matching request texts.

    >>> normalize("  a\\n  b ")
    'a b'
    """
    return " ".join(text.split())


def parse_transcript(text: str) -> list[tuple[str, str]]:
    """Split a paper-style transcript into ``(label, text)`` turns, dropping empty trailing ones.

    >>> parse_transcript("\\n\\nHuman: hi\\n\\nAssistant: hello\\n\\nHuman:")
    [('Human', 'hi'), ('Assistant', 'hello')]
    """
    parts = _LABEL.split("\n\n" + text.lstrip())
    turns = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    while turns and not turns[-1][1]:
        turns.pop()
    return turns


def make_example(
    conversation: list[tuple[str, str]],
    requests: tuple[str, str],
    answers: tuple[str, str],
    principles: list[Principle],
) -> Example:
    """An :class:`Example` from ``(role, text)`` turns ending with the answer critiqued.

    The critique request is matched to a principle by its text; requests that
    differ from that principle's are kept on the example.

    >>> p = Principle(id="p0", critique="Is it rude?", revision="Make it polite.")
    >>> e = make_example([("user", "hi"), ("assistant", "go away")], ("Is it rude?", "Be nice."),
    ...                  ("Yes.", "Hello!"), [p])
    >>> e.prompt, e.principle, e.critique_request, e.revision_request
    ('hi', 'p0', None, 'Be nice.')
    """
    roles = [role for role, _ in conversation]
    if len(conversation) < 2 or roles[-1] != "assistant" or roles[0] != "user":
        raise ValueError("the conversation must start with a user turn and end with an assistant answer")
    if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        raise ValueError("the conversation's turns do not alternate between user and assistant")
    history = conversation[:-1]
    prompt: Any = history[0][1] if len(history) == 1 else [{"role": r, "content": t} for r, t in history]
    critique_request, revision_request = requests
    match = next((p for p in principles if normalize(p.critique) == normalize(critique_request)), None)
    own = (match.critique, match.revision) if match else (None, None)
    return Example(
        prompt=prompt,
        response=conversation[-1][1],
        critique=answers[0],
        revision=answers[1],
        principle=match.id if match else None,
        critique_request=None if own[0] else critique_request,
        revision_request=None
        if own[1] and normalize(own[1]) == normalize(revision_request)
        else revision_request,
    )


def transcript_example(text: str, principles: list[Principle]) -> Example:
    """An :class:`Example` from one few-shot transcript of the paper (``ValueError`` if it does not parse)."""
    turns = parse_transcript(text)
    labels = [label for label, _ in turns]
    if "CritiqueRequest" not in labels:
        raise ValueError("no CritiqueRequest")
    at = labels.index("CritiqueRequest")
    tail = turns[at : at + 4]
    if [label for label, _ in tail] != ["CritiqueRequest", "Critique", "RevisionRequest", "Revision"]:
        raise ValueError(
            "expected CritiqueRequest, Critique, RevisionRequest, Revision after the conversation"
        )
    conversation = [(_ROLES.get(label, label), t) for label, t in turns[:at]]
    if any(role not in ("user", "assistant") for role, _ in conversation):
        raise ValueError("unexpected label before the CritiqueRequest")
    return make_example(conversation, (tail[0][1], tail[2][1]), (tail[1][1], tail[3][1]), principles)


def chat_example(chat: list[dict[str, str]], principles: list[Principle]) -> Example:
    """An :class:`Example` from one llm-swarm chat: conversation, then critique and revision turns."""
    if len(chat) < 6:
        raise ValueError(f"{len(chat)} messages, need at least 6")
    conversation = [(m["role"], m["content"].strip()) for m in chat[:-4]]
    req_c, crit, req_r, rev = chat[-4:]
    if [req_c["role"], crit["role"], req_r["role"], rev["role"]] != [
        "user",
        "assistant",
        "user",
        "assistant",
    ]:
        raise ValueError(
            "the last four messages are not critique request, critique, revision request, revision"
        )
    return make_example(
        conversation, (req_c["content"], req_r["content"]), (crit["content"], rev["content"]), principles
    )


def split_chats(messages: list[dict[str, str]], revisions: set[str]) -> list[list[dict[str, str]]]:
    """Split a flattened ``system_chat`` into chats, each ending with the answer to a revision request.

    A chat ends after a user turn matching a known revision request and its
    answer; what is left at the end is one more chat.

    >>> m = lambda r, c: {"role": r, "content": c}
    >>> flat = [m("user", "q"), m("assistant", "a"), m("user", "crit?"), m("assistant", "c"),
    ...         m("user", "Fix it."), m("assistant", "b"), m("user", "q2"), m("assistant", "a2")]
    >>> [len(c) for c in split_chats(flat, {"Fix it."})]
    [6, 2]
    """
    chats, start = [], 0
    for i in range(len(messages) - 1):
        m, nxt = messages[i], messages[i + 1]
        if m["role"] == "user" and normalize(m["content"]) in revisions and nxt["role"] == "assistant":
            chats.append(messages[start : i + 2])
            start = i + 2
    if start < len(messages):
        chats.append(messages[start:])
    return chats


# --- reading files -------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a JSON file; any problem is one :class:`CaiError` line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CaiError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise CaiError(f"{path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError as e:
        raise CaiError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CaiError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None


def _text(value: Any, where: str) -> str:
    if isinstance(value, list) and len(value) >= 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise CaiError(f"{where}: expected a non-empty string, got {type(value).__name__}")
    return value


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )
    if not ok:
        raise ValueError(f"{where} is not a list of {{role, content}} messages")
    return value


def _build(data: dict[str, Any], source: Path) -> Constitution:
    try:
        return Constitution.model_validate(data)
    except ValidationError as e:
        raise CaiError(pydantic_error_line(e, str(source))) from None


def _header(name: str, source: Path, fmt: str) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "description": f"Imported from {source.name} ({fmt} format)."}


# --- the two formats ---------------------------------------------------------------------------


def anthropic_principles(data: Any, source: Path) -> list[Principle]:
    """Principles from the paper's ``CritiqueRevisionInstructions.json`` data."""
    if isinstance(data, list):
        raise CaiError(
            f"{source}: a list, not the critique/revision instructions dict",
            hint="pass a comparison-question list (RLMadisonInstructions.json) with --comparisons",
        )
    if not isinstance(data, dict) or not data:
        raise CaiError(f"{source}: expected a dict of {{prompt, edit_request}} entries")
    principles = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "prompt" not in entry or "edit_request" not in entry:
            raise CaiError(f"{source}: {key}: expected keys 'prompt' and 'edit_request'")
        critique = strip_labels(
            _text(entry["prompt"], f"{source}: {key}.prompt"), "CritiqueRequest", "Critique"
        )
        revision = strip_labels(
            _text(entry["edit_request"], f"{source}: {key}.edit_request"), "RevisionRequest", "Revision"
        )
        try:
            principles.append(Principle(id=key, critique=critique, revision=revision))
        except ValidationError as e:
            raise CaiError(pydantic_error_line(e, f"{source}: {key}")) from None
    return principles


def anthropic_comparisons(data: Any, source: Path, count: int) -> list[str]:
    """The paper's comparison questions, with the trailing ``Options:`` removed."""
    if not isinstance(data, list) or not all(isinstance(q, str) and q.strip() for q in data):
        raise CaiError(f"{source}: expected a list of comparison questions")
    if len(data) != count:
        raise CaiError(f"{source}: {len(data)} questions for {count} principles; they are paired by position")
    return [q.strip().removesuffix("Options:").strip() for q in data]


def anthropic_feedback(data: Any, source: Path) -> list[FeedbackExample]:
    """Feedback examples from the paper's ``RLMadisonFewShotPrompts.json`` data."""
    if not isinstance(data, list):
        raise CaiError(f"{source}: expected a list of {{prompt, corrects, incorrects}}")
    out = []
    for i, item in enumerate(data):
        where = f"{source}: item {i}"
        if not isinstance(item, dict):
            raise CaiError(f"{where}: expected {{prompt, corrects, incorrects}}")
        turns = [
            (_ROLES.get(label, label), t) for label, t in parse_transcript(_text(item.get("prompt"), where))
        ]
        prompt: Any = turns[0][1] if len(turns) == 1 else [{"role": r, "content": t} for r, t in turns]
        try:
            out.append(
                FeedbackExample(
                    prompt=prompt,
                    chosen=_text(item.get("corrects"), f"{where}.corrects"),
                    rejected=_text(item.get("incorrects"), f"{where}.incorrects"),
                )
            )
        except ValidationError as e:
            raise CaiError(pydantic_error_line(e, where)) from None
    return out


def import_anthropic(
    instructions: Path,
    few_shot: Path | None = None,
    *,
    comparisons: Path | None = None,
    feedback_few_shot: Path | None = None,
    name: str | None = None,
) -> Imported:
    """Import the paper's critique/revision instructions, with optional few-shot and comparison files."""
    principles = anthropic_principles(read_json(instructions), instructions)
    notes: list[str] = []
    if comparisons is not None:
        questions = anthropic_comparisons(read_json(comparisons), comparisons, len(principles))
        principles = [
            p.model_copy(update={"comparison": q}) for p, q in zip(principles, questions, strict=True)
        ]
    examples = []
    if few_shot is not None:
        transcripts = read_json(few_shot)
        if not isinstance(transcripts, list) or not all(isinstance(t, str) for t in transcripts):
            raise CaiError(f"{few_shot}: expected a list of transcript strings")
        for i, text in enumerate(transcripts):
            try:
                examples.append(transcript_example(text, principles))
            except (ValueError, ValidationError) as e:
                notes.append(f"{few_shot.name}: transcript {i} skipped: {str(e).splitlines()[0]}")
    feedback = (
        anthropic_feedback(read_json(feedback_few_shot), feedback_few_shot) if feedback_few_shot else []
    )
    data = {
        **_header(name or "anthropic-cai", instructions, "anthropic"),
        "principles": principles,
        "examples": examples,
        "feedback_examples": feedback,
    }
    return Imported(_build(data, instructions), notes)


def _swarm_examples(
    system_chat: Any, principles: list[Principle], source: str
) -> tuple[list[Example], list[str]]:
    if not system_chat:
        return [], []
    try:
        if all(isinstance(c, list) for c in system_chat):
            chats = [_messages(c, f"system_chat[{i}]") for i, c in enumerate(system_chat)]
        else:
            revisions = {normalize(p.revision) for p in principles}
            chats = split_chats(_messages(system_chat, "system_chat"), revisions)
    except (ValueError, TypeError) as e:
        return [], [f"{source}: {e}; no examples imported"]
    examples, notes = [], []
    for i, chat in enumerate(chats):
        try:
            examples.append(chat_example(chat, principles))
        except (ValueError, ValidationError) as e:
            notes.append(f"{source}: system_chat example {i} skipped: {str(e).splitlines()[0]}")
    return examples, notes


def import_llm_swarm(path: Path, *, name: str | None = None) -> Imported:
    """Import llm-swarm's constitution JSON (``critic``/``revision`` pairs and ``system_chat``)."""
    data = read_json(path)
    items, system_chat = (data, []) if isinstance(data, list) else (None, None)
    if isinstance(data, dict):
        if "constitutions" not in data:
            raise CaiError(f"{path}: no 'constitutions' key", hint="is this an llm-swarm constitution file?")
        items, system_chat = data["constitutions"], data.get("system_chat", [])
    if not isinstance(items, list) or not items:
        raise CaiError(f"{path}: expected a non-empty list of {{critic, revision}} under 'constitutions'")
    principles = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise CaiError(f"{path}: constitutions[{i}]: expected {{critic, revision}}")
        critique = _text(item.get("critic"), f"{path}: constitutions[{i}].critic")
        revision = _text(item.get("revision"), f"{path}: constitutions[{i}].revision")
        principles.append(Principle(id=f"p{i}", critique=critique, revision=revision))
    examples, notes = _swarm_examples(system_chat, principles, path.name)
    if system_chat and not examples:
        notes.append(f"{path.name}: no few-shot examples could be parsed from system_chat")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-") or "imported"
    header = _header(name or f"llm-swarm-{stem}", path, "llm-swarm")
    return Imported(_build({**header, "principles": principles, "examples": examples}, path), notes)


def detect_format(data: Any) -> str | None:
    """Guess a file's format from its parsed JSON.

    >>> detect_format({"constitutions": []}), detect_format({"harmful0": {"prompt": [], "edit_request": ""}})
    ('llm-swarm', 'anthropic')
    """
    if isinstance(data, dict) and "constitutions" in data:
        return "llm-swarm"
    if isinstance(data, dict) and all(isinstance(v, dict) and "edit_request" in v for v in data.values()):
        return "anthropic"
    if isinstance(data, list) and all(isinstance(v, dict) and "critic" in v for v in data):
        return "llm-swarm"
    return None
