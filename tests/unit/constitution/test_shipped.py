"""Every shipped constitution (and example) validates, and the set covers what the project promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cai.constitution.load import load_constitution
from cai.constitution.paths import SHIPPED_DIR
from cai.constitution.schema import diff_constitutions
from tests.helpers.paths import ROOT

FILES = sorted(
    p
    for folder in ("constitutions", "examples")
    if (ROOT / folder).is_dir()
    for p in (ROOT / folder).rglob("*.yaml")
)
CONSTITUTIONS = [p for p in FILES if p.relative_to(ROOT).parts[0] == "constitutions"]
EXAMPLES = [p for p in FILES if p.relative_to(ROOT).parts[0] == "examples"]


def test_shipped_dir_is_found() -> None:
    assert SHIPPED_DIR == ROOT / "constitutions"
    assert {p.relative_to(SHIPPED_DIR).as_posix() for p in CONSTITUTIONS} >= {
        "harmless.yaml",
        "helpful-honest.yaml",
        "no-medical-advice.yaml",
        "concise-friendly.yaml",
        "regions/eu.yaml",
        "regions/us.yaml",
        "regions/apac.yaml",
    }


@pytest.mark.parametrize("path", CONSTITUTIONS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_constitution_is_valid(path: Path) -> None:
    c = load_constitution(path)
    assert c.version and c.system_prompt and c.comparison and c.description
    for p in c.principles:
        assert p.comparison and p.tags, p.id


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_constitution_is_valid(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not (isinstance(data, dict) and ({"principles", "extends"} & set(data))):
        pytest.skip("not a constitution")
    load_constitution(path)


def test_harmless_covers_the_core_harms() -> None:
    c = load_constitution("harmless")
    assert len(c.principles) >= 12
    want = {
        "violence-weapons",
        "self-harm",
        "crime",
        "privacy",
        "hate-harassment",
        "child-safety",
        "risky-advice",
        "deception-manipulation",
        "extremism",
        "helpful-refusal",
        "no-preaching",
    }
    assert want <= {p.id for p in c.principles}
    assert len(c.examples) == 2 and len(c.feedback_examples) == 2


def test_regions_override_add_and_remove() -> None:
    harmless = load_constitution("harmless")
    removed = []
    for region in ("eu", "us", "apac"):
        d = diff_constitutions(harmless, load_constitution(f"regions/{region}"))
        assert d.added and d.changed, region
        removed += d.removed
    assert removed


def test_no_medical_advice_layer() -> None:
    c = load_constitution("no-medical-advice")
    assert {"no-diagnosis", "no-dosing", "no-prescribing", "health-info-welcome"} <= {
        p.id for p in c.principles
    }
    assert "violence-weapons" in {p.id for p in c.principles}
