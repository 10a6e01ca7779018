"""The files that ship with cai: constitutions, example prompt sets and example recipes.

They live at the project's top level (``constitutions/``, ``examples/prompts/``,
``examples/recipes/``), where users browse them. This package holds two relative
links to those folders (``constitutions -> ../../constitutions``,
``examples -> ../../examples``): an editable install follows them into the source
tree, and a wheel build copies the files they point at into the package
(``pyproject.toml``'s package data), so a plain ``pip install`` finds them through
:mod:`importlib.resources` too. The layout inside the package mirrors the top level,
so a recipe's relative paths (``../../constitutions/harmless.yaml``,
``../prompts/redteam.jsonl``) hold in both. Where the links were checked out as
plain files (git without symlink support), the source tree's top level is used.

>>> (constitutions_dir() / "harmless.yaml").is_file(), (prompts_dir() / "redteam.jsonl").is_file()
(True, True)
>>> find_recipe("quickstart").relative_to(recipes_dir()).as_posix()
'quickstart.yaml'
>>> find_recipe("no/such/recipe.yaml").as_posix()
'no/such/recipe.yaml'
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path


@functools.cache
def root() -> Path:
    """The folder holding the shipped ``constitutions/`` and ``examples/`` (in the installed package)."""
    here = Path(str(files(__name__)))
    if (here / "constitutions").is_dir():
        return here
    return Path(__file__).resolve().parents[2]  # links not checked out: the source tree's top level


def constitutions_dir() -> Path:
    """The shipped constitutions (``harmless.yaml``, ``regions/eu.yaml``...)."""
    return (root() / "constitutions").resolve()


def prompts_dir() -> Path:
    """The shipped prompt sets (``redteam.jsonl``, ``lookalike.jsonl``, ``benign.jsonl``...)."""
    return (root() / "examples" / "prompts").resolve()


def recipes_dir() -> Path:
    """The shipped ``cai run`` recipes (``quickstart.yaml``...)."""
    return (root() / "examples" / "recipes").resolve()


def recipe_names() -> list[str]:
    """Names of the shipped recipes, for messages.

    >>> "quickstart" in recipe_names()
    True
    """
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def find_recipe(path_or_name: str | Path) -> Path:
    """``path_or_name`` when it exists (or looks like a path), else the shipped recipe of that name
    (``quickstart``, ``regions``); unknown names come back unchanged for the loader's own error."""
    path = Path(path_or_name)
    if path.exists() or len(path.parts) != 1:
        return path
    for candidate in (recipes_dir() / path.name, recipes_dir() / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    return path
