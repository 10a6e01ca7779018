"""The ``cai`` command line.

Each command group lives in its own module and imports its heavy dependencies
(torch, transformers, datasets) inside the command, so ``cai --help`` is instant.
User errors (:class:`cai.errors.CaiError`) print one line and exit 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys

import typer

from cai.cli import audit as _audit
from cai.cli import constitution as _constitution
from cai.cli import critique as _critique
from cai.cli import env as _env
from cai.cli import export as _export
from cai.cli import generate as _generate
from cai.cli import label as _label
from cai.cli import train as _train

app = typer.Typer(
    name="cai",
    help="Constitutional AI and RLAIF: constitutions in YAML, AI feedback, preference training, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _state["debug"] = debug


app.add_typer(_constitution.app, name="constitution")
app.command("env")(_env.env)
app.command("generate")(_generate.generate)
app.command("export")(_export.export)
app.command("critique")(_critique.critique)
app.command("label")(_label.label)
app.add_typer(_audit.app, name="audit")
app.add_typer(_train.app, name="train")


def _on_sigint(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """Say how to resume, then interrupt as usual (writers close; the file keeps every finished record)."""
    import signal

    print("interrupted: what was written is kept; rerun the same command to resume where it stopped",
          file=sys.stderr)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line."""
    import signal

    from cai.errors import CaiError

    signal.signal(signal.SIGINT, _on_sigint)
    try:
        app(prog_name="cai")
    except CaiError as exc:
        if _state["debug"] or "--debug" in sys.argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
