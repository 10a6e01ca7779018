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
HUB_TEST_FRACTION = 0.1  # a dataset repo's test splits, as `cai export`'s default


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
    """One repo to push: its artifact, id, type, source files, and what its card says."""

    artifact: str
    repo_id: str
    repo_type: str
    source: Path
    metadata: dict[str, Any]  # the card's YAML: lineage, licence, tags, constitution
    about: str  # one line: what this repo is
    constitution_yaml: str
    extra: str  # the recipe and stats sections

    @property
    def body(self) -> str:
        """The Markdown of a model repo's card (a dataset card is made with its parquet files)."""
        return "\n".join([f"# {self.repo_id.split('/')[-1]}", "", self.about, "", "## Constitution", "",
                          "```yaml", self.constitution_yaml.rstrip(), "```", "", self.extra])


def recipe_sections(recipe: Recipe, stats: dict[str, Any]) -> str:
    """The recipe as run and the stage's stats, as card sections.

    >>> from cai.run.recipe import Recipe
    >>> text = recipe_sections(Recipe(name="t", prompts={"redteam": ["r.jsonl"]}), {"train_loss": 1.0})
    >>> text.startswith("## Recipe") and "name: t" in text and '"train_loss": 1.0' in text
    True
    """
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json", exclude={"variants"}), sort_keys=False)
    return "\n".join(["## Recipe", "", "```yaml", recipe_yaml.rstrip(), "```", "",
                      "## Stats", "", "```json", json.dumps(stats, indent=2, default=str), "```", ""])


def _about(recipe: Recipe, artifact: str) -> str:
    return (f"The {artifact.replace('_', ' ')} made by `cai run` from the recipe `{recipe.name}`"
            + (f": {recipe.description.rstrip('.')}." if recipe.description else "."))


def model_card(metadata: dict[str, Any], body: str, artifact: str) -> str:
    """A model repo's ``README.md`` (``huggingface_hub.ModelCard``): metadata, then ``body``."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers",
                         pipeline_tag="text-classification" if artifact == "rm" else "text-generation",
                         **{k: v for k, v in metadata.items() if v is not None})
    template = "---\n{{ card_data }}\n---\n\n{{ body }}"
    return str(ModelCard.from_template(data, template_str=template, body=body))


def _stats(folder: Path, outputs: dict[str, Any]) -> dict[str, Any]:
    for name in STATS_FILES:
        p = folder / name
        if p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            return data.get("metrics", data) if name == "cai_card.json" else data
    return dict(outputs)


def _trained_base(source: Path) -> str | None:
    """The hub id the trainer's own card names as base model (``None`` without one)."""
    from cai.core.lineage import hub_base_model

    return hub_base_model(source) if source.is_dir() else None


def _hub_sources(values: Any) -> list[str]:
    """Hub dataset ids among source strings (nested in lists and dicts).

    >>> _hub_sources({"redteam": ["org/red:train", "a.jsonl"], "seed": 0, "helpful": []})
    ['org/red']
    """
    from cai.core.lineage import hub_dataset_id

    if isinstance(values, dict):
        return sorted({h for v in values.values() for h in _hub_sources(v)})
    if isinstance(values, (list, tuple)):
        return sorted({h for v in values for h in _hub_sources(v)})
    found = hub_dataset_id(values) if isinstance(values, str) else None
    return [found] if found else []


def _metadata(recipe: Recipe, artifact: str, repo_ids: dict[str, str], source: Path,
              ref: dict[str, str]) -> dict[str, Any]:
    """Card metadata of one artifact: lineage (the run's other repos where they are pushed too)."""
    from cai.core.lineage import hub_base_model, model_license

    weights = recipe.model.train_weights()
    tags = ["cai", "constitutional-ai", "rlaif", "trl", artifact.replace("_", "-")]
    common = {"license": model_license(weights), "tags": tags, "constitution": [ref]}
    prompts = _hub_sources(recipe.prompts.model_dump(mode="json"))
    if artifact == "sft_data":
        return {**common, "source_datasets": prompts or None}
    if artifact == "preferences":
        human = _hub_sources([str(h) for h in recipe.label.human])
        return {**common, "source_datasets": sorted(set(prompts + human)) or None}
    rm_from = recipe.rm.start_from if recipe.rm is not None else "sft"
    parent = {"sft": "base", "rm": rm_from, "policy": "sft"}[artifact]
    base = repo_ids.get("sft") if parent == "sft" else None
    base = base or _trained_base(source) or hub_base_model(weights)
    data = {"sft": ["sft_data"], "rm": ["preferences"],
            "policy": ["preferences"] if recipe.policy.method == "dpo" else []}[artifact]
    datasets = [repo_ids[d] for d in data if d in repo_ids]
    return {**common, "base_model": base, "datasets": datasets or None}


def _has_records(path: Path) -> bool:
    """Whether a JSONL file has a non-blank line."""
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        return any(line.strip() for line in fh)


def hub_items(recipe: Recipe, run_dir: Path, outputs: dict[str, dict[str, Any]],
              namespace: str) -> list[HubItem]:
    """The repos this run would push (artifacts whose stage ran)."""
    const = recipe_constitution(recipe)
    ref = const.ref().model_dump()
    ran = [a for a in recipe.hub.artifacts if ARTIFACTS[a][0] in outputs and ARTIFACTS[a][1] in
           outputs[ARTIFACTS[a][0]]]
    ran = [a for a in ran if ARTIFACTS[a][2] == "model"  # a record set with no records makes no repo
           or _has_records(run_dir / outputs[ARTIFACTS[a][0]][ARTIFACTS[a][1]])]
    repo_ids = {a: f"{namespace}/{recipe.name}-{a.replace('_', '-')}" for a in ran}
    items = []
    for artifact in ran:
        stage, key, repo_type = ARTIFACTS[artifact]
        source = run_dir / outputs[stage][key]
        stats = _stats(source if source.is_dir() else source.parent, outputs[stage])
        items.append(HubItem(artifact, repo_ids[artifact], repo_type, source,
                             _metadata(recipe, artifact, repo_ids, source, ref), _about(recipe, artifact),
                             const.to_yaml(), recipe_sections(recipe, stats)))
    return items


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _stage_dataset(item: HubItem, folder: Path) -> None:
    """A dataset repo: the records as parquet splits with a dataset card (:mod:`cai.stages.export_files`)."""
    from cai.stages.export import to_dataset
    from cai.stages.export_files import write_export

    kind = "sft" if item.artifact == "sft_data" else "prefs"
    dd = to_dataset(**{kind: item.source}, test_fraction=HUB_TEST_FRACTION, seed=0)
    meta = item.metadata
    write_export(dd, folder, repo_id=item.repo_id, license=meta.get("license"),
                 description=f"{item.about} Test splits: {HUB_TEST_FRACTION:.0%} of the ids, by a hash "
                             "(as `cai export`).",
                 constitution_text=item.constitution_yaml, source_datasets=meta.get("source_datasets"),
                 extra_sections="\n" + item.extra)


def stage_item(item: HubItem, hub_dir: Path) -> Path:
    """Lay out one repo in ``hub_dir/<repo name>/``: its files and README.md; return the folder."""
    folder = hub_dir / item.repo_id.split("/")[-1]
    if folder.exists():
        shutil.rmtree(folder)
    if item.repo_type == "dataset":
        _stage_dataset(item, folder)
        return folder
    folder.mkdir(parents=True)
    if item.source.is_dir():
        skip = ("checkpoint-", "README.md")
        for f in sorted(p for p in item.source.rglob("*") if p.is_file()):
            relative = f.relative_to(item.source)
            if not relative.parts[0].startswith(skip):
                _link_or_copy(f, folder / relative)
    else:
        _link_or_copy(item.source, folder / item.source.name)
    body = item.body
    trained = item.source / "README.md" if item.source.is_dir() else None
    if trained is not None and trained.is_file():  # the trainer's own card: data files, their hashes, metrics
        from huggingface_hub import ModelCard

        text = ModelCard.load(trained).text.lstrip()
        head, sep, rest = text.partition("\n## Constitution\n")
        if sep and "\n## Data\n" in rest:  # the constitution is above already
            text = head + "\n## Data\n" + rest.split("\n## Data\n", 1)[1]
        body += "\n## Training card\n\n" + text
    (folder / "README.md").write_text(model_card(item.metadata, body, item.artifact), encoding="utf-8")
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
