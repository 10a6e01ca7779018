"""Reading a recipe file: safe YAML with line numbers, one-line errors, and ``variants``.

Every problem becomes one :class:`~cai.core.errors.CaiError` line naming the file,
the line, the field and a fix; an unknown key names the closest valid one.

``variants`` (name -> overrides, merged deeply into the recipe) give several
aligned models from one recipe, e.g. one per regional constitution; each
variant runs in ``run_dir/<variant>/``.

>>> deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"c": 3}})
{'a': {'b': 1, 'c': 3}, 'd': 1}
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cai.core.errors import CaiError
from cai.core.yaml_lines import error_parts, located_error, parse_yaml, read_source, where
from cai.run.recipe import Recipe


@dataclass(frozen=True)
class LoadedRecipe:
    """One runnable recipe: its variant name (None for a plain recipe), the recipe, its run directory."""

    variant: str | None
    recipe: Recipe
    run_dir: Path
    source: Path


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X | None``, ``Annotated[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def fields_at(loc: tuple[Any, ...], model: type[BaseModel] = Recipe) -> list[str]:
    """The field names valid at ``loc`` (the path of the parent mapping).

    >>> "rounds" in fields_at(("critique",)), "lora" in fields_at(("policy", "train"))
    (True, True)
    >>> "adapter" in fields_at(("regions", "eu"))  # a mapping of sections: its keys are names
    True
    """
    cls: type[BaseModel] | None = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if cls is None or part not in cls.model_fields:
            return []
        annotation = cls.model_fields[part].annotation
        if typing.get_origin(annotation) is dict and parts:  # e.g. regions: {eu: RegionSpec}
            parts.pop(0)
            annotation = typing.get_args(annotation)[1]
        cls = _model_of(annotation)
    return list(cls.model_fields) if cls is not None else []


def _fix(exc: ValidationError, loc: tuple[Any, ...]) -> str | None:
    """The hint for an error: the closest valid key for an unknown one."""
    from cai.train.common.config import closest_key

    kinds = {e["type"] for e in exc.errors()}
    if "extra_forbidden" not in kinds or not loc:
        return None
    valid = fields_at(tuple(loc[:-1]))
    near = closest_key(str(loc[-1]), valid)
    if near:
        return f"did you mean {near!r}?"
    return f"valid keys here: {', '.join(valid)}" if valid else "remove it"


def validate_recipe(data: Any, source: str, lines: dict, base: Path, prefix: tuple[str, ...] = ()) -> Recipe:
    """The validated recipe, or one ``file:line: field: message (fix: ...)`` error."""
    if not isinstance(data, dict):
        raise CaiError(f"{source}: expected a mapping of recipe sections, got {type(data).__name__}",
                       hint="see examples/recipes/quickstart.yaml")
    try:
        return Recipe.model_validate(data, context={"base": base})
    except ValidationError as exc:
        loc, msg, others = error_parts(exc)
        err = located_error(loc, msg, where(source, lines, (*prefix, *loc)), others)
        raise CaiError(err.message,
                       hint=_fix(exc, loc) or "see examples/recipes/ for valid recipes") from None


def load_recipe(path: str | Path, *, run_dir: Path | None = None,
                variant: str | None = None) -> list[LoadedRecipe]:
    """The recipe at ``path``, or one per variant (only ``variant`` when given), with their run
    directories."""
    p = Path(path)
    source = str(path)
    if p.is_dir():
        raise CaiError(f"{source}: is a directory",
                       hint="give a recipe YAML file, e.g. examples/recipes/quickstart.yaml")
    data, lines = parse_yaml(read_source(p, source), source)
    base = p.resolve().parent
    recipe = validate_recipe(data, source, lines, base)
    root = run_dir or recipe.run_dir or Path("runs") / recipe.name
    if not recipe.variants:
        if variant is not None:
            raise CaiError(f"--variant {variant}: {source} has no variants", hint="drop --variant")
        return [LoadedRecipe(None, recipe, root, p)]
    names = list(recipe.variants)
    if variant is not None and variant not in names:
        raise CaiError(f"--variant {variant}: no such variant in {source}",
                       hint=f"use one of: {', '.join(names)}")
    out = []
    plain = {k: v for k, v in data.items() if k != "variants"}
    for name in names if variant is None else [variant]:
        over = recipe.variants[name]
        if "variants" in over:
            raise CaiError(f"{where(source, lines, ('variants', name, 'variants'))}: "
                           f"variants.{name}.variants: "
                           "variants cannot nest", hint="list every variant at the top level")
        merged = deep_merge(plain, {"name": f"{recipe.name}-{name}", **over})
        vlines = {**lines, **{k[2:]: v for k, v in lines.items() if k[:2] == ("variants", name)}}
        out.append(LoadedRecipe(name, validate_recipe(merged, source, vlines, base), root / name, p))
    return out
