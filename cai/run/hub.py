"""``cai run --push-to-hub``: the run's datasets and models, each with a card, staged and pushed.

Nothing is pushed unless asked. With ``--push-to-hub`` every artifact the
recipe lists (``hub.artifacts``: the SFT set, the preference set, the SFT
model, the preference model, the policy) is first **staged** in
``run_dir/hub/<repo name>/``: its files (hard links where possible) and a
``README.md`` card carrying the resolved constitution YAML, the recipe as
run, and the stage's stats. Then:

* offline (``HF_HUB_OFFLINE=1``, the default of ``make``): nothing leaves the
  machine; the command says where the staged repos are and how to upload them;
* online: each folder is uploaded to ``<hub.namespace>/<recipe>-<artifact>``
  (``hub.private``, default true); a missing ``hub.namespace`` fails in one
  line before any stage runs (:func:`check_push`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cai.core.errors import CaiError
from cai.run.recipe import Recipe, recipe_constitution

# artifact -> (stage, output key, repo type)
ARTIFACTS = {
    "sft_data": ("critique", "sft", "dataset"),
    "preferences": ("label", "preferences", "dataset"),
    "sft": ("sft", "model", "model"),
    "rm": ("rm", "model", "model"),
    "policy": ("policy", "model", "model"),
}
STATS_FILES = ("stats.json", "cai_card.json")


def hub_offline(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment forbids the hub (``HF_HUB_OFFLINE`` set to a true value).

    >>> hub_offline({"HF_HUB_OFFLINE": "1"}), hub_offline({"HF_HUB_OFFLINE": "0"}), hub_offline({})
    (True, False, False)
    """
    env = os.environ if env is None else env
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_push(recipe: Recipe) -> str:
    """``"stage"`` (offline: stage only) or ``"push"``; raises before any work when a push cannot happen."""
    if hub_offline():
        return "stage"
    if not recipe.hub.namespace:
        raise CaiError("--push-to-hub needs hub.namespace in the recipe (your user or organisation name)",
                       hint="add `hub: {namespace: my-org}`, or set HF_HUB_OFFLINE=1 to stage into "
                            "run_dir/hub/ only")
    return "push"


@dataclass(frozen=True)
class HubItem:
    """One repo to push: its id, type, source files and card."""

    repo_id: str
    repo_type: str
    source: Path
    card: str


def card_text(recipe: Recipe, artifact: str, repo_type: str, constitution_yaml: str,
              stats: dict[str, Any]) -> str:
    """The README of a pushed repo: what it is, the constitution, the recipe and the stats.

    >>> from cai.run.recipe import Recipe
    >>> r = Recipe(name="t", prompts={"redteam": ["r.jsonl"]})
    >>> text = card_text(r, "sft", "model", "name: c\\n", {"train_loss": 1.0})
    >>> "name: c" in text and "train_loss" in text and text.startswith("---")
    True
    """
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json", exclude={"variants"}), sort_keys=False)
    tags = ["cai", "constitutional-ai", "rlaif"]
    return "\n".join([
        "---", yaml.safe_dump({"tags": tags, "library_name": "transformers"} if repo_type == "model"
                              else {"tags": tags}, sort_keys=False).strip(), "---", "",
        f"# {recipe.name}: {artifact}", "",
        f"Made by `cai run` from the recipe `{recipe.name}`"
        + (f": {recipe.description.rstrip('.')}." if recipe.description else "."),
        "", "## Constitution", "", "```yaml", constitution_yaml.rstrip(), "```", "",
        "## Recipe", "", "```yaml", recipe_yaml.rstrip(), "```", "",
        "## Stats", "", "```json", json.dumps(stats, indent=2, default=str), "```", "",
    ])


def _stats(folder: Path, outputs: dict[str, Any]) -> dict[str, Any]:
    for name in STATS_FILES:
        p = folder / name
        if p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            return data.get("metrics", data) if name == "cai_card.json" else data
    return dict(outputs)


def hub_items(recipe: Recipe, run_dir: Path, outputs: dict[str, dict[str, Any]],
              namespace: str) -> list[HubItem]:
    """The repos this run would push (artifacts whose stage ran)."""
    const_yaml = recipe_constitution(recipe).to_yaml()
    items = []
    for artifact in recipe.hub.artifacts:
        stage, key, repo_type = ARTIFACTS[artifact]
        if stage not in outputs or key not in outputs[stage]:
            continue
        source = run_dir / outputs[stage][key]
        stats = _stats(source if source.is_dir() else source.parent, outputs[stage])
        repo = f"{namespace}/{recipe.name}-{artifact.replace('_', '-')}"
        items.append(HubItem(repo, repo_type, source,
                             card_text(recipe, artifact, repo_type, const_yaml, stats)))
    return items


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_item(item: HubItem, hub_dir: Path) -> Path:
    """Lay out one repo in ``hub_dir/<repo name>/``: its files and README.md; return the folder."""
    folder = hub_dir / item.repo_id.split("/")[-1]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if item.source.is_dir():
        skip = ("checkpoint-", "README.md")
        for f in sorted(p for p in item.source.rglob("*") if p.is_file()):
            relative = f.relative_to(item.source)
            if not relative.parts[0].startswith(skip):
                _link_or_copy(f, folder / relative)
    else:
        _link_or_copy(item.source, folder / item.source.name)
    card = item.card
    trained = item.source / "README.md" if item.source.is_dir() else None
    if trained is not None and trained.is_file():  # the trainer's own card: data files, their hashes, metrics
        card += ("\n## Training card\n\n"
                 + trained.read_text(encoding="utf-8").split("\n---\n", 1)[-1].lstrip())
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def push_to_hub(recipe: Recipe, run_dir: Path, outputs: dict[str, dict[str, Any]], mode: str) -> list[str]:
    """Stage every artifact in ``run_dir/hub/``; when ``mode == "push"``, upload them. Returns lines to
    print."""
    namespace = recipe.hub.namespace or "local"
    hub_dir = run_dir / "hub"
    lines = []
    for item in hub_items(recipe, run_dir, outputs, namespace):
        folder = stage_item(item, hub_dir)
        if mode == "push":
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(item.repo_id, repo_type=item.repo_type, private=recipe.hub.private, exist_ok=True)
            api.upload_folder(repo_id=item.repo_id, repo_type=item.repo_type, folder_path=str(folder),
                              commit_message=f"cai run {recipe.name}")
            lines.append(f"pushed {item.repo_type} {item.repo_id} (from {folder})")
        else:
            lines.append(f"staged {item.repo_type} {item.repo_id} in {folder}")
    if mode != "push":
        lines.append(f"HF_HUB_OFFLINE is set: nothing was pushed; upload a staged folder with "
                     f"`huggingface-cli upload REPO {hub_dir}/NAME`, or rerun with --push-to-hub online")
    return lines
