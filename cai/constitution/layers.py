"""Layered constitutions: ``extends`` bases, ``remove`` and per-id overrides, resolved to one.

A file may say ``extends: [name-or-path, ...]``. Bases are resolved relative to
the extending file's folder first, then the shipped ``constitutions/`` folder
(``harmless``, ``regions/eu``; ``.yaml`` optional) and merged in order:
principles are united (a later base replaces an id in place), example lists are
concatenated, other fields come from the last base. The layer then removes ids
(``remove: [...]``, which also drops examples tied to them), adds or partially
overrides principles by id (an entry whose id exists changes only the fields it
gives; a new id must be complete) and overrides top-level fields (a layer's
``examples`` list replaces the inherited one). Every error names the
``file:line`` that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from cai.constitution.paths import SHIPPED_DIR, candidate_paths, display_path
from cai.constitution.schema import (
    Constitution,
    Example,
    FeedbackExample,
    OptionalText,
    PrincipleId,
    Text,
    Weight,
    check_version,
)
from cai.core.errors import CaiError
from cai.core.yaml_lines import Lines, error_hint, error_parts, located_error, parse_yaml, read_source, where


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Entry(BaseModel):
    """A principle in a layer: complete when new, partial when overriding an inherited id."""

    model_config = ConfigDict(extra="forbid")
    id: PrincipleId
    critique: Text | None = None
    revision: Text | None = None
    comparison: Text | None = None
    weight: Weight | None = None
    tags: list[Text] | None = None


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extends: Annotated[list[Text], BeforeValidator(_listify)] = Field(default_factory=list)
    remove: list[PrincipleId] = Field(default_factory=list)
    name: Text | None = None
    version: Annotated[Text | None, BeforeValidator(check_version)] = None
    description: OptionalText | None = None
    system_prompt: OptionalText | None = None
    comparison: Text | None = None
    principles: list[_Entry] = Field(default_factory=list)
    examples: list[Example] | None = None
    feedback_examples: list[FeedbackExample] | None = None


@dataclass
class _Merged:
    """A constitution being resolved, with where each part was last set."""

    fields: dict[str, Any] = field(default_factory=dict)
    principles: dict[str, dict[str, Any]] = field(default_factory=dict)
    at: dict[str, str] = field(default_factory=dict)

    def absorb(self, base: _Merged) -> None:
        for key in ("examples", "feedback_examples"):
            mine = self.fields.get(key, [])
            base_items = base.fields.get(key, [])
            if key in base.fields:
                self.fields[key] = mine + [x for x in base_items if x not in mine]
        self.fields.update(
            {k: v for k, v in base.fields.items() if k not in ("examples", "feedback_examples")}
        )
        self.principles.update({pid: dict(p) for pid, p in base.principles.items()})
        self.at.update(base.at)


def _find_base(ref: str, base_dir: Path | None, at: str) -> Path:
    folders = ([base_dir] if base_dir is not None else []) + [SHIPPED_DIR]
    for path in candidate_paths(ref, folders):
        if path.is_file():
            return path
    looked = ", ".join(display_path(f) for f in folders)
    raise CaiError(f"{at}: extends: cannot find '{ref}' (looked in {looked})", hint="check the name or path")


def _validate_layer(data: Any, source: str, lines: Lines) -> _Layer:
    if data is None:
        raise CaiError(f"{source}:1: empty file", hint="a constitution needs name, version and principles")
    if not isinstance(data, dict):
        raise CaiError(f"{source}:1: expected a mapping of constitution fields, got {type(data).__name__}",
                       hint="start with name:, version: and principles:")
    try:
        return _Layer.model_validate(data)
    except ValidationError as e:
        loc, msg, others = error_parts(e)
        raise located_error(loc, msg, where(source, lines, loc), others, hint=error_hint(e)) from None


def _apply(layer: _Layer, merged: _Merged, source: str, lines: Lines) -> None:
    for i, pid in enumerate(layer.remove):
        if pid not in merged.principles:
            at = where(source, lines, ("remove", i))
            raise CaiError(
                f"{at}: remove: unknown principle id '{pid}'", hint="remove only ids the bases define"
            )
        del merged.principles[pid]
        merged.at = {k: v for k, v in merged.at.items() if not k.startswith(f"principle:{pid}:")}
        merged.at.pop(f"principle:{pid}", None)
        for key in ("examples", "feedback_examples"):
            merged.fields[key] = [x for x in merged.fields.get(key, []) if x.principle != pid]
    if "remove" in layer.model_fields_set:
        merged.at["principles"] = where(source, lines, ("remove",))
    first: dict[str, int] = {}
    for i, entry in enumerate(layer.principles):
        at = where(source, lines, ("principles", i))
        if entry.id in first:
            raise CaiError(
                f"{at}: principles.{i}.id: duplicate principle id '{entry.id}' (first at line "
                f"{first[entry.id]})",
                hint="give each principle its own id",
            )
        first[entry.id] = lines.get(("principles", str(i)), 1)
        given = entry.model_dump(exclude_unset=True)
        merged.principles.setdefault(entry.id, {}).update(given)
        merged.at.setdefault(f"principle:{entry.id}", at)
        for key in given:
            merged.at[f"principle:{entry.id}:{key}"] = where(source, lines, ("principles", i, key))
    if "principles" in layer.model_fields_set:
        merged.at["principles"] = where(source, lines, ("principles",))
    top = layer.model_dump(exclude_unset=True, exclude={"extends", "remove", "principles"})
    for key in top:
        merged.fields[key] = getattr(layer, key)
        merged.at[key] = where(source, lines, (key,))


def resolve_layers(text: str, source: str, base_dir: Path | None, chain: list[Path]) -> _Merged:
    """Merge ``text``'s bases (recursively, refusing cycles) and apply the layer on top."""
    data, lines = parse_yaml(text, source)
    layer = _validate_layer(data, source, lines)
    merged = _Merged(at={"": f"{source}:1"})
    for i, ref in enumerate(layer.extends):
        at = where(source, lines, ("extends", i))
        path = _find_base(ref, base_dir, at)
        if path.resolve() in chain:
            names = [p.name for p in chain[chain.index(path.resolve()) :]] + [path.name]
            raise CaiError(f"{at}: extends: cycle {' -> '.join(names)}", hint="remove one of these extends")
        merged.absorb(
            resolve_layers(
                read_source(path, display_path(path)),
                display_path(path),
                path.parent,
                [*chain, path.resolve()],
            )
        )
    _apply(layer, merged, source, lines)
    return merged


def finish_layers(merged: _Merged, source: str) -> Constitution:
    """Validate the merged result as a :class:`Constitution`, blaming the line that set the bad field."""
    ids = list(merged.principles)
    data = {**merged.fields, "principles": list(merged.principles.values())}
    try:
        return Constitution.model_validate(data)
    except ValidationError as e:
        loc, msg, others = error_parts(e)
        if loc and loc[0] == "principles" and len(loc) > 1 and isinstance(loc[1], int):
            pid = ids[loc[1]]
            sub = loc[2] if len(loc) > 2 else None
            at = merged.at.get(f"principle:{pid}:{sub}") or merged.at.get(f"principle:{pid}", merged.at[""])
            loc = ("principles", f"[{pid}]", *loc[2:])
        else:
            at = merged.at.get(str(loc[0]) if loc else "", merged.at[""])
        raise located_error(loc, msg, at, others, hint=error_hint(e)) from None


def resolve_constitution(text: str, source: str, base_dir: Path | None, chain: list[Path]) -> Constitution:
    """Resolve YAML ``text`` (read from ``source``; ``chain`` holds the files being resolved) to a
    constitution."""
    return finish_layers(resolve_layers(text, source, base_dir, chain), source)
