"""Typed records that flow between stages.

Every stage reads and writes JSONL lines that validate against one of these
pydantic models. Field names follow TRL's conversational formats
(``prompt``/``completion`` and ``prompt``/``chosen``/``rejected``, each a list of
``{role, content}`` messages) so a stage's output loads into TRL unchanged.
Each record carries ``schema_version``, a deterministic ``id`` and its
:class:`Provenance`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from cai import __version__

SCHEMA_VERSION = 1

Role = Literal["system", "user", "assistant"]


def make_id(*parts: Any) -> str:
    """A deterministic record id: the first 16 hex digits of sha256 over canonical JSON.

    Anything that determines a record (prompt, model, sampling, seed...) goes in
    ``parts``; the same parts always give the same id, so a rerun can skip ids it
    already wrote.

    >>> make_id("a", 1) == make_id("a", 1)
    True
    >>> make_id("a", 1) == make_id("a", 2)
    False
    >>> len(make_id({"b": 2, "a": 1}))
    16
    """
    blob = json.dumps(_plain(parts), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _plain(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [_plain(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def utc_now() -> str:
    """ISO-8601 UTC timestamp, second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Message(BaseModel):
    """One chat turn.

    >>> Message(role="user", content="hi").model_dump()
    {'role': 'user', 'content': 'hi'}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Role
    content: str


def as_messages(prompt: str | list[Message] | list[dict]) -> list[Message]:
    """Normalise a prompt (plain string or list of messages) to messages.

    >>> [m.role for m in as_messages("hello")]
    ['user']
    >>> as_messages([{"role": "user", "content": "a"}])[0].content
    'a'
    """
    if isinstance(prompt, str):
        return [Message(role="user", content=prompt)]
    return [m if isinstance(m, Message) else Message(**m) for m in prompt]


def to_chat(messages: list[Message]) -> list[dict[str, str]]:
    """Messages as plain dicts, the form backends take.

    >>> to_chat([Message(role="user", content="x")])
    [{'role': 'user', 'content': 'x'}]
    """
    return [{"role": m.role, "content": m.content} for m in messages]


def _one_assistant_turn(v: list[Message]) -> list[Message]:
    if len(v) != 1 or v[0].role != "assistant":
        raise ValueError("completion must be exactly one assistant message")
    return v


AssistantTurn = Annotated[list[Message], AfterValidator(_one_assistant_turn)]
"""A completion: exactly one assistant message."""


class SamplingParams(BaseModel):
    """How to sample. ``temperature == 0`` means greedy decoding.

    ``seed`` is the base seed of a request; backends derive each request's own
    seed from it and the request's content (:func:`cai.backends.request_seed`),
    so a record does not depend on which batch it happened to share.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_new_tokens: int = Field(256, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    n: int = Field(1, ge=1, le=64)
    stop: tuple[str, ...] = ()


class ConstitutionRef(BaseModel):
    """Which constitution a record was made under."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    hash: str


class Provenance(BaseModel):
    """Where a record came from: enough to reproduce or audit it."""

    model_config = ConfigDict(extra="forbid")
    constitution: ConstitutionRef | None = None
    principle_ids: list[str] = Field(default_factory=list)
    model: str | None = None
    backend: str | None = None
    sampling: SamplingParams | None = None
    seed: int | None = None
    created_at: str = Field(default_factory=utc_now)
    cai_version: str = __version__


class PromptRecord(BaseModel):
    """One input prompt: ``{"prompt": str}`` or ``{"prompt": [messages]}``.

    Other keys (``label``, ``type``...) are kept in :attr:`metadata`.
    A conversation must end with a user turn.

    >>> r = PromptRecord.model_validate({"prompt": "How do I kill a Python process?", "label": "safe"})
    >>> r.metadata, [m.role for m in r.messages()]
    ({'label': 'safe'}, ['user'])
    """

    model_config = ConfigDict(extra="forbid")
    prompt: str | list[Message]
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_extra(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {"prompt", "id", "metadata"}
            extra = {k: v for k, v in data.items() if k not in known}
            if extra and isinstance(data.get("metadata", {}), dict):
                data = {k: v for k, v in data.items() if k in known}
                data["metadata"] = {**data.get("metadata", {}), **extra}
        return data

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, v: str | list[Message]) -> str | list[Message]:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("prompt is empty")
        else:
            if not v:
                raise ValueError("prompt has no messages")
            if v[-1].role != "user":
                raise ValueError("a conversation prompt must end with a user turn")
        return v

    def messages(self) -> list[Message]:
        return as_messages(self.prompt)

    def key(self) -> str:
        """The prompt's id: the given one, or a hash of its messages."""
        return self.id or make_id(to_chat(self.messages()))


class CompletionRecord(BaseModel):
    """A model's answer to a prompt, in TRL's conversational prompt/completion format."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    prompt_id: str
    prompt: list[Message]
    completion: AssistantTurn
    finish_reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    sample_index: int = 0
    provenance: Provenance
    metadata: dict[str, Any] = Field(default_factory=dict)


PreferenceSource = Literal["ai", "human", "revision"]


class PreferenceRecord(BaseModel):
    """A preference pair in TRL's format, with a soft label.

    ``p_chosen`` is the probability that ``chosen`` is the better answer (1.0 for
    a hard human label). ``source`` says who labelled it: ``ai`` (the feedback
    model), ``human``, or ``revision`` (a revision preferred over the answer it
    revised, an explicit shortcut). ``pool`` names the annotator group of a human
    label (a region, a vendor...; see :mod:`cai.stages.label.pools`). Human files
    without ``id`` get one from their content (the pool included, when there is one,
    so two pools' labels of one pair stay two rows).

    >>> r = PreferenceRecord.model_validate({"prompt": [{"role": "user", "content": "q"}],
    ...     "chosen": [{"role": "assistant", "content": "a"}],
    ...     "rejected": [{"role": "assistant", "content": "b"}]})
    >>> r.source, r.p_chosen, len(r.id)
    ('human', 1.0, 16)
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str = ""
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    p_chosen: float = Field(1.0, ge=0.0, le=1.0)
    source: PreferenceSource = "human"
    weight: float = Field(1.0, ge=0.0)
    pool: str | None = Field(None, min_length=1)
    provenance: Provenance | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # How the AI labeler got p_chosen (source "ai"); see LabelDetail. Not ``label``: that is TRL's key for
    # unpaired preference data, and TRL's chat-template helpers refuse rows that carry it.
    ai_label: LabelDetail | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_label_key(cls, data: Any) -> Any:
        """Files written before the rename carry ``label`` (an object or null): read it as ``ai_label``.

        Another ``label`` (TRL's unpaired ``true``/``false``) stays an unknown key, refused as such.

        >>> old = {"prompt": "q", "chosen": "a", "rejected": "b", "label": None}
        >>> PreferenceRecord.model_validate(old).ai_label is None
        True
        """
        if isinstance(data, dict) and "label" in data and (data["label"] is None
                                                           or isinstance(data["label"], dict)):
            if "ai_label" in data:
                raise ValueError("has both label and ai_label: keep ai_label only (label is its old name)")
            data = {("ai_label" if k == "label" else k): v for k, v in data.items()}
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_str(cls, v: Any) -> Any:
        return [{"role": "user", "content": v}] if isinstance(v, str) else v

    @field_validator("chosen", "rejected", mode="before")
    @classmethod
    def _answer_str(cls, v: Any) -> Any:
        return [{"role": "assistant", "content": v}] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> PreferenceRecord:
        if not self.prompt:
            raise ValueError("prompt has no messages")
        for name, answer in (("chosen", self.chosen), ("rejected", self.rejected)):
            if not answer or answer[-1].role != "assistant":
                raise ValueError(f"{name} must end with an assistant message (the answer)")
        if self.chosen == self.rejected or self.chosen[-1].content == self.rejected[-1].content:
            raise ValueError("chosen equals rejected: a pair needs two different answers")
        if not self.id:
            pool = () if self.pool is None else (self.pool,)  # files without pools keep their old ids
            self.id = make_id(to_chat(self.prompt), to_chat(self.chosen), to_chat(self.rejected), *pool)
        return self


# --------------------------------------------------------------------------- AI feedback labels


class Judgement(BaseModel):
    """One read of the feedback model: one principle, one answer order.

    ``order`` ``"ab"`` shows the pair's ``answer_a`` as option (A); ``"ba"``
    shows it as (B). ``p_option_a`` is the probability of option (A) (a softmax
    over the two options' log-probs, or 1/0 from a generated letter), ``None``
    when the read failed; ``raw`` keeps a generated answer, ``reasoning`` a
    chain of thought, ``error`` why the read failed.
    """

    model_config = ConfigDict(extra="forbid")
    principle_id: str
    order: Literal["ab", "ba"]
    method: Literal["logprobs", "generated"]
    p_option_a: float | None = Field(None, ge=0.0, le=1.0)
    logprobs: tuple[float, float] | None = None  # log p("A"), log p("B") after the answer prefix
    raw: str | None = None
    reasoning: str | None = None
    error: str | None = None


class LabelRecord(BaseModel):
    """Everything the feedback model said about one pair: one line of ``labels.jsonl``.

    ``answer_a``/``answer_b`` are the pair in its given order. ``p_a`` is the
    probability that ``answer_a`` is better, averaged over both orders and the
    principles whose two reads both succeeded (``used_principle_ids``);
    ``p_a_ab``/``p_a_ba`` are the same average from one order only.
    ``status == "failed"`` (no principle read in both orders) leaves them ``None``:
    a failed pair never becomes a label, but its raw text stays here.
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    pair_id: str
    prompt: list[Message]
    answer_a: list[Message]
    answer_b: list[Message]
    status: Literal["ok", "failed"]
    p_a: float | None = Field(None, ge=0.0, le=1.0)
    p_a_ab: float | None = Field(None, ge=0.0, le=1.0)
    p_a_ba: float | None = Field(None, ge=0.0, le=1.0)
    position_consistent: bool | None = None
    principle_ids: list[str]
    used_principle_ids: list[str] = Field(default_factory=list)
    judgements: list[Judgement]
    cot: bool = False
    error: str | None = None
    provenance: Provenance
    metadata: dict[str, Any] = Field(default_factory=dict)


class LabelDetail(BaseModel):
    """How the AI labeler reached a :class:`PreferenceRecord`'s ``p_chosen``.

    ``p_chosen_as_a`` / ``p_chosen_as_b``: the chosen answer's probability when
    it was shown as option (A) / as option (B); ``p_chosen`` is their mean.
    ``position_consistent``: both orders picked the same answer. ``margin`` is
    ``p_chosen - (1 - p_chosen)``. ``label_id`` is the line of ``labels.jsonl``
    with every raw read.
    """

    model_config = ConfigDict(extra="forbid")
    label_id: str
    feedback_model: str
    feedback_backend: str
    method: Literal["logprobs", "generated", "mixed"]
    principle_ids: list[str]
    margin: float = Field(ge=0.0, le=1.0)
    p_chosen_as_a: float = Field(ge=0.0, le=1.0)
    p_chosen_as_b: float = Field(ge=0.0, le=1.0)
    position_consistent: bool
    cot: bool = False
    reasoning: list[str] = Field(default_factory=list)


PreferenceRecord.model_rebuild()


# --------------------------------------------------------------------------- SL-CAI critique/revision

RevisionKind = Literal["revision", "helpful"]


class RevisionRound(BaseModel):
    """One critique/revision round of a :class:`RevisionRecord`.

    ``critique`` is the model's critique as generated (``None`` with
    ``--no-critique``); ``revision`` is the cleaned revision (a leading
    "Revision:"-style preamble stripped) and ``revision_raw`` exactly what the
    model said. ``flags`` name why the revision is unfit for SFT (``empty``,
    ``truncated``, ``unchanged``, ``leak-request``, ``leak-label``, ``leak-role``,
    ``leak-template``, ``repetition``, ``copy-example``, ``copy-critique``,
    ``about-response``, ``off-topic``, ``critique-copy-example``: see
    :mod:`cai.stages.critique.cleaning`); an empty list means it is clean.
    """

    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=1)
    principle_id: str
    critique_request: str | None = None
    critique: str | None = None
    critique_finish_reason: str | None = None
    critique_tokens: int | None = None
    revision_request: str
    revision: str
    revision_raw: str
    revision_finish_reason: str
    revision_tokens: int | None = None
    flags: list[str] = Field(default_factory=list)


class RevisionRecord(BaseModel):
    """The full trace of one prompt x sample through the critique/revision stage.

    ``prompt`` holds the prompt's own turns; ``system_prompt`` the constitution's
    system prompt put in front of them (``None`` when the prompt has its own
    system turn or the constitution none). ``kind`` is ``revision`` (answer, then
    ``rounds``) or ``helpful`` (a plain answer to a benign prompt, no rounds,
    mixed into the SFT set). ``answer_flags`` say whether the initial answer
    itself is unfit (``empty``, ``truncated``, ``leak-role``, ``leak-template``,
    ``repetition``, ``copy-example``). ``few_shot`` is the number of the constitution's examples shown
    before critiques and revisions, ``answer_few_shot`` the number shown before the
    initial answer.
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    kind: RevisionKind = "revision"
    prompt_id: str
    sample_index: int = 0
    prompt: list[Message]
    system_prompt: str | None = None
    answer: str
    answer_finish_reason: str
    answer_tokens: int | None = None
    answer_flags: list[str] = Field(default_factory=list)
    rounds: list[RevisionRound] = Field(default_factory=list)
    no_critique: bool = False
    few_shot: int = 0
    answer_few_shot: int = 0
    provenance: Provenance
    metadata: dict[str, Any] = Field(default_factory=dict)


class SFTRecord(BaseModel):
    """A supervised fine-tuning example in TRL's conversational prompt/completion format.

    ``source_id`` is the :class:`RevisionRecord` it was derived from and
    ``round`` the round whose revision is the completion (0: the plain answer of
    a ``helpful`` record).
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    prompt: list[Message]
    completion: AssistantTurn
    source_id: str
    kind: RevisionKind = "revision"
    round: int = Field(0, ge=0)
    provenance: Provenance
    metadata: dict[str, Any] = Field(default_factory=dict)
