"""``cai --version``: the installed distribution's name and version, before any command runs."""

from __future__ import annotations

import importlib.metadata as md

from cai import __version__
from cai.cli import DISTRIBUTION
from tests.helpers.cli import run_cli


def test_version_prints_the_distribution_version(capsys, monkeypatch) -> None:
    code, out, _ = run_cli(["--version"], capsys, monkeypatch)
    assert code == 0
    assert out.strip() == f"cai {md.version(DISTRIBUTION)} ({DISTRIBUTION})"
    assert md.version(DISTRIBUTION) == __version__  # pyproject's version is cai.__version__
    code, out, _ = run_cli(["--version", "constitution", "validate", "no-such"], capsys, monkeypatch)
    assert code == 0 and out.startswith("cai ")  # eager: it runs first and exits


def test_version_from_an_uninstalled_tree_says_so(capsys, monkeypatch) -> None:
    def missing(name: str) -> str:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    code, out, _ = run_cli(["--version"], capsys, monkeypatch)
    assert code == 0 and out.strip() == f"cai {__version__} (not installed) ({DISTRIBUTION})"
