"""The package's layering, read from the source with ``ast``: the library never imports the CLI, no import
cycles (lazy imports inside functions count too), no private names imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

PACKAGE = ROOT / "cai"
FRONT_ENDS = ("cai.cli", "cai.__main__")  # the only modules that may use typer and cai.cli


def module_files() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


MODULES = module_files()


def imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every import in a file, at any depth (``name`` None for ``import x``)."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
    return out


def resolve(module: str, name: str | None) -> str | None:
    """The cai module an import reaches (``from cai.x import y`` reaches ``cai.x.y`` when that is a
    module)."""
    dotted = f"{module}.{name}" if name else module
    for candidate in (dotted, module):
        while candidate:
            if candidate in MODULES:
                return candidate
            candidate = candidate.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        reached = {resolve(m, n) for m, n in imports(path) if m == "cai" or m.startswith("cai.")}
        g[mod] = {r for r in reached if r and r != mod}
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted.

    >>> cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def is_front_end(mod: str) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in FRONT_ENDS)


def test_only_the_cli_imports_typer_or_the_cli():
    bad = [f"{mod} imports {m}" for mod, path in MODULES.items() if not is_front_end(mod)
           for m, _ in imports(path) if m == "typer" or m.startswith("typer.") or m == "cai.cli"
           or m.startswith("cai.cli.")]
    assert bad == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_private_names_cross_modules():
    bad = [f"{mod}: from {m} import {n}" for mod, path in MODULES.items() for m, n in imports(path)
           if m.startswith("cai") and n and n.startswith("_") and not n.startswith("__")]
    assert bad == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_at_most_eight_top_level_modules():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, top
