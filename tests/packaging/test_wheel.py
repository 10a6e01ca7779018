"""The wheel, installed into a fresh virtualenv without the source tree, works from another directory.

The wheel is built from a copy of the files a checkout has (so no ``build/`` lands in the repo), installed
with ``--no-deps`` into a new venv whose only other path is this venv's site-packages (a plain path line in
a ``.pth`` file: the editable install's own ``.pth`` finder there is not run, so ``import cai`` can only
find the wheel's copy). Every command runs in a temporary folder, away from the repo's
``constitutions/`` and ``examples/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.integration

SOURCES = ("pyproject.toml", "README.md", "cai", "constitutions", "examples")  # what the wheel is built from
OTHER_DATA = ("cai/train/profiles/ddp.yaml", "cai/scoring/refusal_classifier.json")


def shipped_files() -> set[str]:
    """Where each file the CLI defaults may use lands in the wheel: every constitution, every file under
    examples/prompts/, every example recipe (a new kind of file needs a pattern in pyproject.toml)."""
    found = [*(ROOT / "constitutions").rglob("*.yaml"), *(ROOT / "examples" / "recipes").glob("*.yaml"),
             *(p for p in (ROOT / "examples" / "prompts").rglob("*") if p.is_file())]
    return {f"cai/shipped/{p.relative_to(ROOT).as_posix()}" for p in found}


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(fresh venv, its wheel, a working folder outside the repo)``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # symlinks stay links (cai/shipped's point at the copied top-level folders)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(dist)], cwd=src)
    (wheel,) = dist.glob("constitutional_ai-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}  # this venv's: torch, trl...
    (purelib / "project_deps.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return venv, wheel, work


def test_wheel_holds_the_shipped_files(installed):
    _, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    want = shipped_files() | set(OTHER_DATA)
    assert {"cai/shipped/constitutions/harmless.yaml", "cai/shipped/examples/prompts/redteam.jsonl"} <= want
    assert want <= names, f"not in the wheel (add a package-data pattern): {sorted(want - names)}"
    assert not any(n.startswith(("tests/", "constitutions/", "examples/")) for n in names)


def test_installed_cai_is_the_wheel_not_the_source_tree(installed):
    venv, _, work = installed
    code = ("import cai, cai.shipped, cai.constitution.paths as p; "
            "print(cai.__file__); print(cai.shipped.prompts_dir()); print(p.SHIPPED_DIR)")
    lines = _run([str(venv / "bin" / "python"), "-c", code], cwd=work).stdout.split()
    assert len(lines) == 3
    for line in lines:
        assert Path(line).is_relative_to(venv), line
        assert not Path(line).is_relative_to(ROOT), line


def test_commands_work_from_another_directory(installed):
    venv, _, work = installed
    cai = str(venv / "bin" / "cai")
    from cai import __version__

    assert _run([cai, "--version"], cwd=work).stdout.strip() == f"cai {__version__} (constitutional-ai)"
    assert "ok harmless" in _run([cai, "constitution", "validate", "harmless"], cwd=work).stdout
    shown = _run([cai, "constitution", "show", "regions/eu"], cwd=work).stdout
    assert "name: harmless-eu" in shown
    assert "--redteam" in _run([cai, "eval", "--help"], cwd=work).stdout
    assert "would run" in _run([cai, "run", "quickstart", "--dry-run"], cwd=work).stdout
    prompts = work / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
    _run([cai, "generate", "-p", "prompts.jsonl", "-o", "out.jsonl", "-m", "default", "-c", "harmless",
          "--max-new-tokens", "4", "--temperature", "0"], cwd=work, timeout=300)
    (row,) = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert row["completion"][-1]["role"] == "assistant"
    assert row["provenance"]["constitution"]["name"] == "harmless"
