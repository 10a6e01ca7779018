"""Reading YAML safely while keeping line numbers, and one-line ``file:line`` errors.

:func:`parse_yaml` loads one document with the safe loader only, refuses
duplicate keys, recursive aliases and alias bombs, and maps every key path to
the line it starts on; :func:`where` turns a field path back into
``source:line``. :func:`error_parts` and :func:`located_error` reduce a pydantic
``ValidationError`` to a single :class:`~cai.core.errors.CaiError` line
``file:line: field: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cai.core.errors import CaiError, best_error, fix_hint

MAX_NODES = 100_000

Lines = dict[tuple[str, ...], int]


def decode_utf8(data: bytes, source: str) -> str:
    """UTF-8 text (a BOM dropped); bad bytes become ``source:line: not valid UTF-8``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CaiError(
            f"{source}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})", hint="save the file as UTF-8"
        ) from None


def read_source(path: Path, source: str) -> str:
    """The file's text, with missing, unreadable or non-UTF-8 files as one-line errors naming ``source``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CaiError(f"{source}: file not found", hint="check the path") from None
    except IsADirectoryError:
        raise CaiError(f"{source}: is a directory, not a YAML file",
                       hint="give the path of a .yaml file") from None
    except OSError as e:
        raise CaiError(f"{source}: cannot read: {e.strerror}", hint="check the file's permissions") from None
    return decode_utf8(data, source)


def _yaml_error(e: yaml.YAMLError, text: str, source: str) -> CaiError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        line = mark.line + 1
    else:
        line = text[: getattr(e, "position", 0)].count("\n") + 1
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context, opened = getattr(e, "context", None), getattr(e, "context_mark", None)
    if context and opened is not None and mark is not None and opened.line != mark.line:
        problem = f"{problem} ({context} that starts at line {opened.line + 1})"
    if "python/" in str(e) or "could not determine a constructor" in str(e):
        return CaiError(
            f"{source}:{line}: YAML tag not allowed: {problem}",
            hint="cai reads YAML as plain data only: remove the '!!' tag",
        )
    return CaiError(
        f"{source}:{line}: malformed YAML: {problem}",
        hint="check brackets, quotes, colons and indentation at or just before that line",
    )


def _walk(node: yaml.Node, path: tuple[str, ...], lines: Lines, seen: set[int], source: str) -> None:
    """Record the line of every key and list item; reject duplicate keys."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if name != "<<" and name in first:
                dotted = ".".join((*path, name))
                raise CaiError(f"{source}:{line}: {dotted}: duplicate key (first at line {first[name]})",
                               hint="keep one of the two")
            first[name] = line
            lines.setdefault((*path, name), line)
            _walk(value, (*path, name), lines, seen, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, str(i)), item.start_mark.line + 1)
            _walk(item, (*path, str(i)), lines, seen, source)


def _expanded_size(node: yaml.Node, memo: dict[int, int], busy: set[int], source: str) -> int:
    if id(node) in memo:
        return memo[id(node)]
    if id(node) in busy:
        raise CaiError(f"{source}:{node.start_mark.line + 1}: recursive YAML alias",
                       hint="an alias (*name) may not refer to the node that contains it")
    busy.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    size = 1 + sum(_expanded_size(c, memo, busy, source) for c in children)
    if size > MAX_NODES:
        raise CaiError(
            f"{source}:{node.start_mark.line + 1}: YAML too large (aliases expand past {MAX_NODES} nodes)",
            hint="write the data out instead of nesting aliases",
        )
    busy.discard(id(node))
    memo[id(node)] = size
    return size


def parse_yaml(text: str, source: str) -> tuple[Any, Lines]:
    """Safe-load one YAML document and map each key path to its line.

    >>> parse_yaml("name: x\\nprinciples:\\n  - id: a\\n", "f.yaml")  # doctest: +NORMALIZE_WHITESPACE
    ({'name': 'x', 'principles': [{'id': 'a'}]}, {('name',): 1, ('principles',): 2, ('principles', '0'): 3,
    ('principles', '0', 'id'): 3})
    """
    lines: Lines = {}
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, lines
            _expanded_size(node, {}, set(), source)
            _walk(node, (), lines, set(), source)
            return loader.construct_document(node), lines
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, source) from None
    except RecursionError:
        raise CaiError(f"{source}: YAML nested too deeply", hint="flatten the file") from None


def where(source: str, lines: Lines, loc: tuple[Any, ...]) -> str:
    """``source:line`` of the deepest known prefix of ``loc``.

    >>> where("f.yaml", {("principles",): 2, ("principles", "1"): 5}, ("principles", 1, "critique"))
    'f.yaml:5'
    """
    for n in range(len(loc), 0, -1):
        key = tuple(str(p) for p in loc[:n])
        if key in lines:
            return f"{source}:{lines[key]}"
    return f"{source}:1"


def error_parts(exc: ValidationError) -> tuple[tuple[Any, ...], str, int]:
    """The most telling error's loc (union tags dropped) and message, and how many other fields failed."""
    err, loc, others = best_error(exc)
    return loc, err["msg"].removeprefix("Value error, "), others


def error_hint(exc: ValidationError) -> str:
    """The fix for the most telling error of ``exc`` (see :func:`cai.core.errors.fix_hint`)."""
    err, loc, _ = best_error(exc)
    leaf = str(loc[-1]) if loc and err.get("type") == "extra_forbidden" else dotted(loc)
    return fix_hint(err, leaf)


def dotted(loc: tuple[Any, ...]) -> str:
    """A field path for messages.

    >>> dotted(("principles", 3, "critique")), dotted(("principles", "[harm]", "weight")), dotted(())
    ('principles.3.critique', 'principles[harm].weight', '(file)')
    """
    out = ""
    for part in loc:
        part = str(part)
        out += part if not out or part.startswith("[") else "." + part
    return out or "(file)"


def located_error(loc: tuple[Any, ...], msg: str, at: str, others: int, hint: str | None = None) -> CaiError:
    """``at: field.path: message``, noting how many other fields failed."""
    more = f" (and {others} more)" if others else ""
    return CaiError(f"{at}: {dotted(loc)}: {msg}{more}", hint=hint)
