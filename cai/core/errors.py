"""The one exception type users see.

Every error caused by the user's input (a file, a field, an option, a server
address) is raised as :class:`CaiError` with a single line that names where the
problem is and how to fix it. The CLI prints that line and exits non-zero; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from contextlib import contextmanager


class CaiError(Exception):
    """A user-facing error, printed as one line.

    >>> str(CaiError("prompts.jsonl:3: prompt: field required", hint="add a 'prompt' key"))
    "prompts.jsonl:3: prompt: field required (fix: add a 'prompt' key)"
    """

    def __init__(self, message: str, hint: str | None = None):
        self.message = " ".join(str(message).split())
        self.hint = hint
        super().__init__(self.message if not hint else f"{self.message} (fix: {hint})")


def pydantic_error_line(exc, where: str) -> str:
    """Render the first error of a pydantic ``ValidationError`` as ``where: field: message``.

    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     n: int
    >>> try:
    ...     M(n="x")
    ... except Exception as e:
    ...     print(pydantic_error_line(e, "f.jsonl:2"))
    f.jsonl:2: n: Input should be a valid integer, unable to parse string as an integer
    """
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
    msg = err.get("msg", str(exc))
    extra = "" if len(exc.errors()) == 1 else f" (and {len(exc.errors()) - 1} more)"
    return f"{where}: {field}: {msg}{extra}"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command, with the line that says what was kept and how to resume.

    A command catches ``KeyboardInterrupt`` around its writing loop and raises
    this; the CLI prints the message as the last line and exits 130.

    >>> str(Interrupted("runs/x.jsonl", 3, "record"))
    'interrupted: 3 record(s) kept in runs/x.jsonl; rerun the same command to resume where it stopped'
    """

    def __init__(self, path: object, kept: int, what: str = "record"):
        super().__init__(
            f"interrupted: {kept} {what}(s) kept in {path}; rerun the same command to resume where it stopped"
        )


def _is_union_tag(part: object) -> bool:
    """Whether a pydantic ``loc`` part names a union member rather than a key (``str``, ``list[Message]``)."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "none") or "[" in part)


def best_error(exc) -> tuple[dict, tuple, int]:
    """The most telling error of a ``ValidationError``, its loc without union tags, and how many other fields
    failed.

    A list-typed prompt's own error (``prompt.0.role``) beats "should be a string".
    """
    errors = exc.errors()
    locs = [tuple(p for i, p in enumerate(e["loc"]) if i == 0 or not _is_union_tag(p)) for e in errors]
    best = 0
    for i, loc in enumerate(locs):
        if loc[: len(locs[0])] == locs[0] and len(errors[i]["loc"]) > len(errors[best]["loc"]):
            best = i
    others = {loc for loc in locs if loc != locs[best][: len(loc)]}
    return errors[best], locs[best], len(others)


_KINDS = {
    "string": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
    "list": "a list", "dict": "a mapping", "model": "a mapping", "model_attributes": "a mapping",
    "tuple": "a list", "literal": None,
}


def fix_hint(err: dict, field: str) -> str:
    """A one-line fix for one pydantic error dict, about ``field`` (a key path or an ``--option``).

    >>> fix_hint({"type": "missing"}, "rejected")
    "add 'rejected'"
    >>> fix_hint({"type": "extra_forbidden"}, "chozen")
    "remove 'chozen' or correct its spelling"
    >>> fix_hint({"type": "greater_than_equal", "ctx": {"ge": 0}}, "--temperature")
    'give --temperature a value >= 0'
    >>> fix_hint({"type": "string_type"}, "prompt")
    "make 'prompt' a string"
    >>> fix_hint({"type": "literal_error", "ctx": {"expected": "'user' or 'assistant'"}}, "role")
    "use 'user' or 'assistant' for 'role'"
    """
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    name = field if field.startswith("--") else f"'{field}'"
    if kind == "missing":
        return f"add {name}"
    if kind == "extra_forbidden":
        return f"remove {name} or correct its spelling"
    if kind == "literal_error" and "expected" in ctx:
        return f"use {ctx['expected']} for {name}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next((v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")), "")
        return f"give {name} a value {bounds[kind]} {limit}".rstrip()
    base = kind.removesuffix("_type").removesuffix("_parsing")
    if _KINDS.get(base):
        return f"make {name} {_KINDS[base]}"
    if field in ("(record)", "'(record)'"):
        return "correct this record as the message says"
    return f"correct {name}"


def pydantic_error(exc, where: str, *, options: bool = False, hint: str | None = None) -> CaiError:
    """A ``ValidationError`` as one :class:`CaiError` ``where: field: message (fix: ...)``.

    ``options=True`` names fields as command-line options (``--max-new-tokens``).

    >>> from pydantic import BaseModel, Field
    >>> class M(BaseModel):
    ...     max_new_tokens: int = Field(1, ge=1)
    >>> try:
    ...     M(max_new_tokens=0)
    ... except Exception as e:
    ...     print(pydantic_error(e, "options", options=True))  # doctest: +NORMALIZE_WHITESPACE
    options: --max-new-tokens: Input should be greater than or equal to 1 (fix: give --max-new-tokens a value
    >= 1)
    """
    err, loc, others = best_error(exc)
    field = ".".join(str(p) for p in loc) or "(record)"
    shown = "--" + str(loc[-1]).replace("_", "-") if options and loc else field
    more = f" (and {others} more)" if others else ""
    msg = err.get("msg", str(exc))
    leaf = str(loc[-1]) if loc and err.get("type") == "extra_forbidden" else field
    return CaiError(f"{where}: {shown}: {msg}{more}", hint=hint or fix_hint(err, shown if options else leaf))


def with_resume(exc: CaiError, path: object, kept: int, what: str = "record") -> CaiError:
    """The same error, its fix extended by how to resume a run that stopped half-way.

    >>> str(with_resume(CaiError("cannot reach http://h/v1", hint="is the server running?"), "o.jsonl",
    ...                 3))  # doctest: +NORMALIZE_WHITESPACE
    'cannot reach http://h/v1 (fix: is the server running? then rerun the same command to resume: 3 record(s)
    kept in o.jsonl)'
    """
    resume = f"rerun the same command to resume: {kept} {what}(s) kept in {path}"
    return CaiError(exc.message, hint=f"{exc.hint} then {resume}" if exc.hint else resume)


@contextmanager
def resumable(path: object, writer: Sized, what: str = "record") -> Iterator[None]:
    """Around a command's writing loop: Ctrl-C and mid-run errors say what was kept and how to resume.

    ``writer`` is the open :class:`cai.core.jsonl.JsonlWriter` (its ``len`` is the records kept).

    >>> try:
    ...     with resumable("o.jsonl", [1, 2], "answer"):
    ...         raise CaiError("cannot reach http://h/v1")
    ... except CaiError as exc:
    ...     print(exc)
    cannot reach http://h/v1 (fix: rerun the same command to resume: 2 answer(s) kept in o.jsonl)
    """
    try:
        yield
    except KeyboardInterrupt:  # the CLI prints this line last and exits 130
        raise Interrupted(path, len(writer), what) from None
    except CaiError as exc:  # a server died mid-run...: say how to resume
        raise with_resume(exc, path, len(writer), what) from None
