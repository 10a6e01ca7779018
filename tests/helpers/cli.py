"""Run ``cai`` in-process through its console entry point, and check a one-line error."""

from __future__ import annotations

import logging
import sys

import pytest


def run_cli(argv: list[str], capsys: pytest.CaptureFixture,
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``cai ARGV`` in-process through the console entry point: ``(exit_code, stdout, stderr)``."""
    from cai.cli import _state, main

    root = logging.getLogger()
    saved = root.handlers[:]
    for handler in saved:  # let the command's logging bind to the captured stderr
        root.removeHandler(handler)
    monkeypatch.setattr(sys, "argv", ["cai", *argv])
    monkeypatch.setitem(_state, "debug", False)
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:  # put logging back as it was: no handler left writing to this test's captured stream
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2, exactly one ``error:`` line holding every needle, no traceback."""
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in errors[0], errors[0]
