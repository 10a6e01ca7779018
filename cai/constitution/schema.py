"""Constitutions: the principles that critique, revise and judge answers, kept in YAML.

A constitution file has ``name``, ``version`` (a string), ``description``,
``system_prompt`` (used when generating answers), ``comparison`` (the default
question the feedback stage asks to choose between two answers) and a non-empty
list of ``principles``. Each :class:`Principle` has a unique ``id``, a
``critique`` request, a ``revision`` request, an optional ``comparison``
question of its own, a sampling ``weight`` (> 0, default 1) and ``tags``.

Few-shot examples live at the top level, so later stages can put them first as
prior turns whatever principle a round samples: ``examples`` are
:class:`Example` critique/revision demonstrations (``prompt``, ``response``,
``critique``, ``revision``; the requests they answer default to those of their
``principle``, or of the principle applied in the current round), and
``feedback_examples`` are :class:`FeedbackExample` preference demonstrations
(``prompt``, ``chosen``, ``rejected``, optional ``principle``/``question`` and
``reasoning``). A ``prompt`` is a string or a list of ``{role, content}``
messages.

Layering: a file may say ``extends: [name-or-path, ...]`` and ``remove: [...]``
and override principles by id; :mod:`cai.constitution.layers` resolves that and
:mod:`cai.constitution.load` finds and loads files.
The resolved :class:`Constitution` has no ``extends``/``remove``; its
:attr:`Constitution.hash` is the sha256 of its canonical JSON, so the same
content gives the same hash however it was written. YAML is read with the safe
loader only (:mod:`cai.core.yaml_lines`), and every bad input becomes one
:class:`~cai.core.errors.CaiError` line ``file:line: field: message``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from cai.core.records import ConstitutionRef, Message

DEFAULT_COMPARISON = "Which of these assistant responses is more helpful, honest and harmless?"


def clean_text(value: str) -> str:
    """Strip surrounding whitespace and refuse empty text.

    >>> clean_text("  Point out any harm.\\n")
    'Point out any harm.'
    """
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _strip_messages(value: Any) -> Any:
    if isinstance(value, list):
        if not value or value[-1].role != "user":
            raise ValueError("a conversation prompt must end with a user turn")
        return [Message(role=m.role, content=m.content.strip()) for m in value]
    return value


Text = Annotated[str, AfterValidator(clean_text)]
OptionalText = Annotated[str, AfterValidator(str.strip)]
PrincipleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Weight = Annotated[float, BeforeValidator(_no_bool), Field(gt=0, allow_inf_nan=False)]
Prompt = Annotated[Text | list[Message], AfterValidator(_strip_messages)]


class Principle(BaseModel):
    """One principle: how to critique an answer, how to revise it, how to compare two."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: PrincipleId
    critique: Text
    revision: Text
    comparison: Text | None = None
    weight: Weight = 1.0
    tags: list[Text] = Field(default_factory=list)


class Example(BaseModel):
    """A critique/revision demonstration, shown to the model as prior turns.

    The requests it answers are ``critique_request``/``revision_request`` when
    given, else those of ``principle``, else those of the round's principle.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: Prompt
    response: Text
    critique: Text
    revision: Text
    principle: PrincipleId | None = None
    critique_request: Text | None = None
    revision_request: Text | None = None


class FeedbackExample(BaseModel):
    """A preference demonstration: for ``prompt``, ``chosen`` beats ``rejected``.

    ``question`` defaults to the comparison of ``principle``, else the
    constitution's; ``reasoning`` optionally explains the choice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: Prompt
    chosen: Text
    rejected: Text
    principle: PrincipleId | None = None
    question: Text | None = None
    reasoning: Text | None = None

    @field_validator("rejected")
    @classmethod
    def _differs(cls, v: str, info: Any) -> str:
        if v == info.data.get("chosen"):
            raise ValueError("rejected equals chosen: a demonstration needs two different answers")
        return v


def check_version(value: Any) -> Any:
    """Refuse a numeric ``version`` (YAML reads ``1.0`` as a float), asking for quotes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'must be a string: quote it, e.g. version: "{value}"')
    return value


def _check_refs(items: list[Any], ids: set[str], what: str) -> None:
    for i, item in enumerate(items):
        if item.principle is not None and item.principle not in ids:
            raise ValueError(f"{what} {i} names unknown principle id '{item.principle}'")


class Constitution(BaseModel):
    """A resolved constitution (no ``extends``/``remove``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Text
    version: Annotated[Text, BeforeValidator(check_version)]
    description: OptionalText = ""
    system_prompt: OptionalText = ""
    comparison: Text = DEFAULT_COMPARISON
    principles: list[Principle]
    examples: list[Example] = Field(default_factory=list)
    feedback_examples: list[FeedbackExample] = Field(default_factory=list)

    @field_validator("principles")
    @classmethod
    def _some_unique(cls, v: list[Principle]) -> list[Principle]:
        if not v:
            raise ValueError("a constitution needs at least one principle")
        seen: set[str] = set()
        for p in v:
            if p.id in seen:
                raise ValueError(f"duplicate principle id '{p.id}'")
            seen.add(p.id)
        return v

    @field_validator("examples", "feedback_examples")
    @classmethod
    def _known_refs(cls, v: list[Any], info: Any) -> list[Any]:
        if "principles" not in info.data:  # already failed
            return v
        ids = {p.id for p in info.data["principles"]}
        _check_refs(v, ids, "example" if info.field_name == "examples" else "feedback example")
        return v

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace: the bytes the hash is taken over."""
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """sha256 hex digest of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def ref(self) -> ConstitutionRef:
        """Name, version and hash, for records' provenance."""
        return ConstitutionRef(name=self.name, version=self.version, hash=self.hash)

    def principle(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def comparison_for(self, principle: Principle | None = None) -> str:
        """The principle's own comparison question, else the constitution's."""
        return (principle.comparison if principle else None) or self.comparison

    def example_requests(self, example: Example, current: Principle) -> tuple[str, str]:
        """The critique and revision requests an example answers (see :class:`Example`)."""
        own = self.principle(example.principle) if example.principle else current
        return example.critique_request or own.critique, example.revision_request or own.revision

    def to_yaml(self) -> str:
        """The resolved constitution as YAML (``None`` fields left out), loadable again."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=88)


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, s: str) -> yaml.Node:
    if any(c in s for c in "\r\x85\u2028\u2029"):  # YAML line breaks that only double quotes keep
        style: str | None = '"'
    else:
        style = "|" if "\n" in s else ">" if len(s) > 80 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


_Dumper.add_representer(str, _represent_str)


# --- sampling and diff -------------------------------------------------------------------------


def sample_principles(constitution: Constitution, rng: random.Random, k: int = 1) -> list[Principle]:
    """Draw ``k`` principles weighted by ``weight``, with replacement.

    The same ``rng`` seed gives the same draw; callers re-sample each round.

    >>> c = Constitution(name="t", version="1", principles=[
    ...     Principle(id="a", critique="c", revision="r"),
    ...     Principle(id="b", critique="c", revision="r", weight=3)])
    >>> draw = [p.id for p in sample_principles(c, random.Random(7), 6)]
    >>> draw == [p.id for p in sample_principles(c, random.Random(7), 6)], len(draw)
    (True, 6)
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    principles = constitution.principles
    return rng.choices(principles, weights=[p.weight for p in principles], k=k)


@dataclass(frozen=True)
class ConstitutionDiff:
    """Principle-level differences from ``a`` to ``b``."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    reordered: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.fields or self.reordered)


def diff_constitutions(a: Constitution, b: Constitution) -> ConstitutionDiff:
    """Added, removed and changed principle ids (with changed field names) and top-level fields.

    >>> p = Principle(id="x", critique="c", revision="r")
    >>> a = Constitution(name="t", version="1", principles=[p])
    >>> b = Constitution(name="t", version="2", principles=[p.model_copy(update={"weight": 2.0}),
    ...     Principle(id="y", critique="c", revision="r")])
    >>> d = diff_constitutions(a, b)
    >>> d.added, d.removed, d.changed, d.fields
    (['y'], [], {'x': ['weight']}, ['version'])
    """
    pa = {p.id: p.model_dump() for p in a.principles}
    pb = {p.id: p.model_dump() for p in b.principles}
    changed = {pid: [f for f in pa[pid] if pa[pid][f] != pb[pid][f]] for pid in pa if pid in pb}
    da, db = a.model_dump(exclude={"principles"}), b.model_dump(exclude={"principles"})
    common = [pid for pid in pa if pid in pb]
    return ConstitutionDiff(
        added=[pid for pid in pb if pid not in pa],
        removed=[pid for pid in pa if pid not in pb],
        changed={pid: fs for pid, fs in changed.items() if fs},
        fields=[f for f in da if da[f] != db[f]],
        reordered=common != [pid for pid in pb if pid in pa],
    )
