"""The ``cai`` command line.

Each command group lives in its own module and imports its heavy dependencies
(torch, transformers, datasets) inside the command, so ``cai --help`` is instant.
User errors (:class:`cai.core.errors.CaiError`) print one line and exit 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys

import typer

from cai.cli import audit as _audit
from cai.cli import constitution as _constitution
from cai.cli import critique as _critique
from cai.cli import env as _env
from cai.cli import eval as _eval
from cai.cli import export as _export
from cai.cli import generate as _generate
from cai.cli import label as _label
from cai.cli import run as _run
from cai.cli import serve as _serve
from cai.cli import train as _train

app = typer.Typer(
    name="cai",
    help="Constitutional AI and RLAIF: constitutions in YAML, AI feedback, preference training, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}

DISTRIBUTION = "constitutional-ai"  # the name on the package index (pyproject.toml); the import name is cai


def _print_version(value: bool) -> None:
    """``--version``: the installed distribution's version, then exit (nothing heavy is imported)."""
    if not value:
        return
    import importlib.metadata as md

    from cai import __version__

    try:
        version = md.version(DISTRIBUTION)
    except md.PackageNotFoundError:  # run from a source tree that was never installed
        version = f"{__version__} (not installed)"
    typer.echo(f"cai {version} ({DISTRIBUTION})")
    raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show cai's debug lines."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="Only warnings and errors on the screen, no progress bars (the run "
                                    "folder's cai.log keeps everything)."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    from cai.cli.logs import set_verbosity

    _state["debug"] = debug
    set_verbosity(verbose, quiet)


app.add_typer(_constitution.app, name="constitution")
app.command("env")(_env.env)
app.command("generate")(_generate.generate)
app.command("export")(_export.export)
app.command("critique")(_critique.critique)
app.command("label")(_label.label)
app.command("run")(_run.run)
app.add_typer(_audit.app, name="audit")
app.add_typer(_train.app, name="train")
app.command("eval")(_eval.eval_command)
app.command("serve")(_serve.serve)


GENERIC_INTERRUPT = "interrupted: what was written is kept; rerun the same command to resume where it stopped"


def _on_sigint(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    """Interrupt as usual (writers close; the file keeps every finished record); a second Ctrl-C is
    immediate."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise KeyboardInterrupt


def _interrupt_behind(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` an exit came from (typer turns Ctrl-C into ``Exit(130)``), if any.

    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt("x")
    ...     except KeyboardInterrupt as k:
    ...         raise SystemExit(130) from k
    ... except SystemExit as e:
    ...     str(_interrupt_behind(e))
    'x'
    >>> _interrupt_behind(SystemExit(0)) is None
    True
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line.

    Ctrl-C prints, as the last line, what was kept and how to resume (the
    command's own :class:`cai.core.errors.Interrupted` line, else a generic one) and
    exits 130.
    """
    import signal
    import traceback

    from cai.cli.logs import to_file
    from cai.core.errors import CaiError, Interrupted

    signal.signal(signal.SIGINT, _on_sigint)
    try:
        app(prog_name="cai")
    except CaiError as exc:
        to_file(f"error: {exc}", if_started=True)  # in the run folder's cai.log once work began
        if _state["debug"] or "--debug" in sys.argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is None:
            raise
        line = str(interrupt) if isinstance(interrupt, Interrupted) else GENERIC_INTERRUPT
        to_file(line, if_started=True)
        print(line, file=sys.stderr)
        sys.exit(130)
    except Exception:
        to_file(traceback.format_exc().rstrip(), if_started=True)  # a crash's traceback, kept with the run
        raise
