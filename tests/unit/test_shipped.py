"""cai.shipped: the packaged constitutions, prompt sets and recipes, and recipes by name."""

from __future__ import annotations

from pathlib import Path

import cai.shipped as shipped
from tests.helpers.paths import ROOT


def test_editable_install_sees_the_top_level_folders() -> None:
    """Through the links in cai/shipped/, the source tree's own folders (what users edit) are the shipped
    ones: a recipe's ``../../constitutions`` holds from the recipes folder."""
    assert shipped.constitutions_dir() == ROOT / "constitutions"
    assert shipped.prompts_dir() == ROOT / "examples" / "prompts"
    assert (shipped.recipes_dir() / "../../constitutions/harmless.yaml").resolve().is_file()
    names = {p.name for p in shipped.prompts_dir().iterdir()}
    assert {"redteam.jsonl", "lookalike.jsonl", "benign.jsonl"} <= names


def test_find_recipe_prefers_a_file_then_a_shipped_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert shipped.find_recipe("quickstart") == shipped.recipes_dir() / "quickstart.yaml"
    assert shipped.find_recipe("regions.yaml") == shipped.recipes_dir() / "regions.yaml"
    (tmp_path / "quickstart").write_text("name: mine\n")
    assert shipped.find_recipe("quickstart") == Path("quickstart")  # a file of that name wins
    assert shipped.find_recipe("sub/quickstart.yaml") == Path("sub/quickstart.yaml")  # a path stays a path
    assert shipped.find_recipe("nope") == Path("nope")  # the loader says "file not found"


def test_links_checked_out_as_files_fall_back_to_the_source_tree(tmp_path: Path, monkeypatch) -> None:
    """git without symlink support writes each link as a small text file: the top level is used then."""
    (tmp_path / "constitutions").write_text("../../constitutions")
    monkeypatch.setattr(shipped, "files", lambda name: tmp_path)
    shipped.root.cache_clear()
    try:
        assert shipped.root() == ROOT
        assert shipped.constitutions_dir() == ROOT / "constitutions"
    finally:
        shipped.root.cache_clear()
