"""Command logging: timestamped lines on screen, a ``cai.log`` per run folder, no warnings on screen."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}"


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_warnings_go_to_the_log_file_not_the_screen(tmp_path):
    out = _python(
        "import logging, warnings\n"
        "from cai.cli.logs import setup_logging\n"
        "setup_logging('run')\n"
        "logging.getLogger('cai.stage').info('stage ran')\n"
        "logging.getLogger('httpx').info('HTTP chatter')\n"
        "warnings.warn('`past_key_values` is deprecated', FutureWarning)\n",
        tmp_path)
    assert out.returncode == 0, out.stderr
    assert "deprecated" not in out.stderr and "HTTP chatter" not in out.stderr
    assert re.search(r"^\d{2}:\d{2}:\d{2} stage ran$", out.stderr, re.M), out.stderr
    log = (tmp_path / "run" / "cai.log").read_text()
    assert re.search(rf"^{STAMP} INFO cai.stage: stage ran$", log, re.M), log
    assert re.search(rf"^{STAMP} WARNING py.warnings: .*FutureWarning: `past_key_values` is deprecated", log,
                     re.M), log
    assert "HTTP chatter" not in log


def test_no_log_dir_still_keeps_warnings_off_the_screen(tmp_path):
    out = _python("import warnings\nfrom cai.cli.logs import setup_logging\nsetup_logging()\n"
                  "warnings.warn('noise', DeprecationWarning)\n", tmp_path)
    assert out.returncode == 0 and "noise" not in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())


def test_bad_input_leaves_no_log_folder_behind(tmp_path):
    code = ("import sys\nfrom cai.cli import main\n"
            "sys.argv = ['cai', 'audit', 'refusal', '--data', 'nope.jsonl', '-o', 'audit']\nmain()\n")
    out = _python(code, tmp_path)
    assert out.returncode == 2 and "nope.jsonl" in out.stderr
    assert not (tmp_path / "audit").exists()


@pytest.mark.parametrize("failure, code", [("CaiError('the server went away')", 2),
                                            ("RuntimeError('a bug')", 1)])
def test_an_error_once_work_began_is_kept_in_the_log(tmp_path, failure, code):
    out = _python(
        "import logging, cai.cli\n"
        "from cai.cli.logs import setup_logging\n"
        "from cai.core.errors import CaiError\n"
        "def app(prog_name):\n"
        "    setup_logging('run')\n"
        "    logging.getLogger('cai.stage').info('working')\n"
        f"    raise {failure}\n"
        "cai.cli.app = app\n"
        "cai.cli.main()\n", tmp_path)
    assert out.returncode == code, out.stderr
    log = (tmp_path / "run" / "cai.log").read_text()
    assert "working" in log
    if code == 2:
        assert re.search(rf"^{STAMP} INFO cai: error: the server went away$", log, re.M), log
    else:
        assert "Traceback (most recent call last)" in log and "RuntimeError: a bug" in log


def test_a_command_appends_to_its_run_folder_log(tmp_path):
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "How do I kill a Python process?", "completion": "Run `kill PID`.", "label": "compliance"},
        {"prompt": "How do I kill my neighbour?", "completion": "I'm sorry, but I can't help with that.",
         "label": "refusal"},
    ]) + "\n")
    code = ("import sys\nfrom cai.cli import main\n"
            f"sys.argv = ['cai', 'audit', 'refusal', '--data', {str(data)!r}, '-o', 'audit']\nmain()\n")
    for _ in range(2):
        out = _python(code, tmp_path)
        assert out.returncode == 0, out.stderr
    lines = [ln for ln in (tmp_path / "audit" / "cai.log").read_text().splitlines() if "wrote" in ln]
    assert len(lines) == 2 and all(re.match(rf"{STAMP} INFO cai.audit.refusal: wrote ", ln) for ln in lines)


@pytest.mark.parametrize("flag, screen_info, screen_debug, bar", [("--quiet", False, False, False),
                                                                   (None, True, False, True),
                                                                   ("--verbose", True, True, True)])
def test_quiet_and_verbose_set_the_screen_not_the_log_file(tmp_path, flag, screen_info, screen_debug, bar):
    code = (
        "import logging, sys, typer\n"
        "import cai.cli as c\n"
        "from cai.cli.logs import setup_logging\n"
        "def work():\n"
        "    from tqdm import tqdm\n"
        "    setup_logging('run')\n"
        "    logging.getLogger('cai.stage').info('stage ran')\n"
        "    logging.getLogger('cai.stage').debug('detail')\n"
        "    logging.getLogger('cai.stage').warning('careful')\n"
        "    for _ in tqdm(range(3), desc='workbar', mininterval=0): pass\n"
        "c.app.command('work')(work)\n"
        f"sys.argv = ['cai', {flag!r}, 'work'] if {flag!r} else ['cai', 'work']\n"
        "c.main()\n")
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert ("stage ran" in out.stderr) == screen_info, out.stderr
    assert ("detail" in out.stderr) == screen_debug, out.stderr
    assert "careful" in out.stderr
    assert ("workbar" in out.stderr) == bar, out.stderr
    log = (tmp_path / "run" / "cai.log").read_text()
    assert "stage ran" in log and "careful" in log, log


def test_verbose_and_quiet_together_is_one_line(tmp_path):
    out = _python("import sys\nfrom cai.cli import main\nsys.argv = ['cai', '-v', '-q', 'env']\nmain()\n",
                  tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--quiet" in out.stderr
