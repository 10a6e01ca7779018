"""The one exception type users see.

Every error caused by the user's input (a file, a field, an option, a server
address) is raised as :class:`CaiError` with a single line that names where the
problem is and how to fix it. The CLI prints that line and exits non-zero; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


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
