"""The library API: ``from cai import ...`` and the README's Python example, run on a tiny model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cai

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The python block after the README's ``api-example`` marker."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README lost its api-example block"
    return match.group(1)


def test_every_export_resolves_and_import_cai_stays_light():
    for name in cai.__all__:
        assert getattr(cai, name) is not None, name
    code = "import sys, cai; print(any(m in sys.modules for m in ('torch', 'transformers', 'datasets')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError):
        cai.no_such_thing  # noqa: B018


def test_the_readme_example_runs_critique_label_dpo(tiny_model_dir, tmp_path, monkeypatch):
    code = readme_example()
    assert 'MODEL, OUT = "default", "runs/api"' in code
    code = code.replace('MODEL, OUT = "default", "runs/api"',
                        f'MODEL, OUT = {str(tiny_model_dir)!r}, "runs/api"')
    code = code.replace("SamplingParams(n=2, temperature=1.0)", "SamplingParams(n=2, temperature=1.0, "
                        "max_new_tokens=12)")  # a tiny model's answers: short is enough
    code = code.replace("CritiqueStageConfig()", "CritiqueStageConfig(loop=CritiqueConfig(rounds=1, "
                        "params=SamplingParams(max_new_tokens=12)))")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"CritiqueConfig": cai.CritiqueConfig}
    exec(compile(code, "README.md:api-example", "exec"), namespace)  # noqa: S102 - our own README
    out = tmp_path / "runs" / "api"
    assert (out / "critique" / "revisions.jsonl").is_file()
    assert len((out / "answers.jsonl").read_text().splitlines()) == 4
    prefs = cai.read_records(out / "label" / "preferences.jsonl", cai.PreferenceRecord)
    assert prefs and all(p.source == "ai" and p.ai_label is not None for p in prefs)
    assert (out / "dpo" / "model.safetensors").is_file() or any((out / "dpo").rglob("*.safetensors"))
