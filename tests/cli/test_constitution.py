"""`cai constitution validate/show/diff/import`: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.cli.constitution import app
from cai.constitution.load import load_constitution, loads_constitution
from tests.helpers.paths import ROOT

GOOD = 'name: good\nversion: "2.0"\nprinciples:\n  - id: a\n    critique: c\n    revision: r\n'
BAD = 'name: bad\nversion: "1"\nprinciples:\n  - id: a\n    critique: c\n    revison: r\n'

runner = CliRunner()


def cai(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point, as a user would."""
    code = "from cai.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    return tmp_path


def test_validate_ok(files: Path) -> None:
    result = runner.invoke(app, ["validate", str(files / "good.yaml")])
    c = load_constitution(files / "good.yaml")
    assert result.exit_code == 0
    assert result.output == f"ok {files / 'good.yaml'} (good v2.0, 1 principles, hash {c.hash[:12]})\n"


def test_validate_mixed_exits_1_with_one_line_per_error(files: Path) -> None:
    result = runner.invoke(app, ["validate", str(files / "good.yaml"), str(files / "bad.yaml")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("ok ")
    assert (lines[1] == f"{files / 'bad.yaml'}:6: principles.0.revison: Extra inputs are not permitted (fix: "
            f"remove 'revison' or correct its spelling)")
    assert len(lines) == 2 and "Traceback" not in result.output


def test_validate_directory(files: Path) -> None:
    (files / "sub").mkdir()
    (files / "sub" / "more.yml").write_text(GOOD)
    result = runner.invoke(app, ["validate", str(files)])
    assert result.exit_code == 1
    assert [line.split()[0] for line in result.output.splitlines()] == [
        f"{files / 'bad.yaml'}:6:",
        "ok",
        "ok",
    ]
    empty = files / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["validate", str(empty)]).exit_code == 1


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "nope.yaml: file not found" in result.output


def test_show_prints_resolved_yaml_and_hash(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", "regions/eu"])
    assert result.exit_code == 0
    eu = load_constitution("regions/eu")
    assert result.output.splitlines()[-1] == f"# hash: sha256:{eu.hash}"
    assert "extends" not in result.output and "remove:" not in result.output
    assert loads_constitution(result.output).hash == eu.hash


def test_diff_is_readable() -> None:
    result = runner.invoke(app, ["diff", "harmless", "regions/eu"])
    assert result.exit_code == 0
    out = result.output
    assert "+ principle eu-data-protection" in out and "- principle privacy" in out
    assert "~ principle hate-harassment" in out and "    tags:" in out
    assert "~ name: 'harmless' -> 'harmless-eu'" in out
    same = runner.invoke(app, ["diff", "harmless", "harmless"])
    assert same.exit_code == 0 and same.output.splitlines()[-1] == "no differences"


def test_import_llm_swarm(tmp_path: Path) -> None:
    src = tmp_path / "swarm.json"
    src.write_text(json.dumps({"constitutions": [{"critic": "Is it rude?", "revision": "Make it polite."}]}))
    out = tmp_path / "out.yaml"
    result = runner.invoke(
        app, ["import", str(src), "--format", "llm-swarm", "-o", str(out), "--name", "mine"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and load_constitution(out).name == "mine"
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0


def test_help_is_fast_and_lists_commands() -> None:
    result = cai("constitution", "--help")
    assert result.returncode == 0
    for command in ("validate", "show", "diff", "import"):
        assert command in result.stdout


def test_user_errors_are_one_line_exit_2(files: Path) -> None:
    result = cai("constitution", "show", str(files / "bad.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {files / 'bad.yaml'}:6: principles.0.revison: Extra inputs are not permitted (fix: "
        f"remove 'revison' or correct its spelling)\n"
    )
    assert "Traceback" not in result.stdout + result.stderr
    missing = cai("constitution", "import", str(files / "nope.json"), "-o", str(files / "x.yaml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "file not found" in missing.stderr


def test_validate_subprocess_exit_1(files: Path) -> None:
    result = cai("constitution", "validate", str(files))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 2
