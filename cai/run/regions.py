"""One core, regional layers: the stages a recipe's ``regions:`` adds (README, "Regional alignment").

The recipe's own sections train the core once (``split -> critique -> sft -> answers -> label -> [rm] ->
[policy]`` on the core constitution). Then:

* ``core``: ``core/model``, a link to the core policy (the last core stage's model, with its card);
* for each region ``R``, on top of the core policy, with R's resolved constitution (e.g. a layer that
  ``extends`` the core's) and R's own prompts:

  - ``regions/R/split``: R's red-team and look-alike prompts (and the core's helpful ones), split into
    train and held-out parts by the same hash as the core's;
  - ``regions/R/critique``: the core policy's answers, critiques and revisions under R's constitution;
  - for ``adapter.method: dpo``, ``regions/R/answers`` and ``regions/R/label``: pairs labelled by R's
    principles;
  - ``regions/R/adapter``: a LoRA adapter trained on the core policy (DPO with the core policy as the
    reference, i.e. the adapter switched off; or SFT on R's critique set). The adapter's files and a card
    naming the core model and R's constitution (name, version, hash) are in ``regions/R/adapter/``; the
    merged model (what ``transformers serve`` loads) in ``regions/R/adapter/train/``;

* ``eval``: every layer (``core``, ``core+R``) answers the core's held-out set and every region's, as a
  models x sets matrix (:mod:`cai.eval.matrix`).

Each region's keys hash its own constitution, prompts and settings plus the core's key, so editing
``constitutions/regions/eu.yaml`` re-runs ``regions/eu/*`` and ``eval`` and nothing else. ``cai serve --run
RUN_DIR`` serves the result (:func:`cai.serve.routing.layers_from_run`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cai.run.data_stages import Scope, answers_stage, critique_stage, label_stage, split_stage
from cai.run.engine import RunContext, Stage
from cai.run.recipe import Recipe, inherit, recipe_constitution, round_stage

CORE_STAGE = "core"


def region_scope(name: str) -> Scope:
    """Where region ``name``'s stages live (``regions/<name>/...``); they sample the core policy.

    >>> region_scope("eu").name("adapter")
    'regions/eu/adapter'
    """
    return Scope(f"regions/{name}/", CORE_STAGE)


def region_recipe(recipe: Recipe, name: str) -> Recipe:
    """The recipe as region ``name``'s data stages read it: its constitution and prompts, and the core's
    ``critique``/``answers``/``label`` sections with the keys the region sets over them. The red-team and
    look-alike prompts are the region's own; the other prompt keys default to the core's.

    >>> r = Recipe.model_validate({"name": "t", "prompts": {"redteam": "r.jsonl", "lookalike": "x.jsonl",
    ...     "limit": 9}, "critique": {"temperature": 0.5}, "regions": {"eu": {"constitution": "eu",
    ...     "prompts": {"redteam": "eu.jsonl"}, "critique": {"rounds": 1}}}})
    >>> e = region_recipe(r, "eu")
    >>> e.constitution, [p.name for p in e.prompts.redteam], e.prompts.lookalike, e.prompts.limit
    ('eu', ['eu.jsonl'], None, 9)
    >>> e.critique.rounds, e.critique.temperature, e.regions
    (1, 0.5, {})
    """
    region = recipe.regions[name]
    prompts = inherit(recipe.prompts, region.prompts).model_copy(
        update={"lookalike": region.prompts.lookalike})
    return recipe.model_copy(update={
        "constitution": region.constitution, "prompts": prompts, "regions": {},
        "critique": inherit(recipe.critique, region.critique),
        "answers": inherit(recipe.answers, region.answers), "label": inherit(recipe.label, region.label)})


def core_model_stage(recipe: Recipe) -> str:
    """The core stage whose model the regions build on: the last policy round, else the SFT model."""
    return round_stage("policy", recipe.rounds) if recipe.policy.method != "none" else "sft"


def core_stage(recipe: Recipe) -> Stage:
    """``core/model``: a relative link to the core policy's folder (its model card travels with it)."""
    last = core_model_stage(recipe)

    def fingerprint(ctx: RunContext) -> Any:
        return {"core": last}

    def run(ctx: RunContext) -> dict[str, Any]:
        link = ctx.dir(CORE_STAGE) / "model"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(ctx.output(last, "model"), link.parent), target_is_directory=True)
        return {"model": ctx.rel(link), "from": last}

    return Stage(CORE_STAGE, (last,), fingerprint, run)


def region_stage(recipe: Recipe, stage: str) -> Stage:
    """The stage named ``regions/<region>/<kind>`` (see the module doc)."""
    _, name, kind = stage.split("/")
    if kind == "adapter":
        return adapter_stage(recipe, name)
    rr, scope = region_recipe(recipe, name), region_scope(name)
    makers = {"split": split_stage, "critique": critique_stage,
              "answers": lambda r, s: answers_stage(r, 1, s), "label": lambda r, s: label_stage(r, 1, s)}
    return makers[kind](rr, scope)


ADAPTER_METRICS = {"dpo": ("train_loss", "rewards/accuracies", "rewards/margins", "global_step"),
                   "sft": ("train_loss", "global_step", "train_runtime")}


def adapter_stage(recipe: Recipe, name: str) -> Stage:
    """Region ``name``'s LoRA adapter on the core policy (DPO on its labels, or SFT on its critique set)."""
    from cai.run.train_stages import adapter_job, check_label_signal, run_train

    spec, rr, scope = recipe.adapter_for(name), region_recipe(recipe, name), region_scope(name)
    stage = scope.name("adapter")
    data = scope.name("label") if spec.method == "dpo" else scope.name("critique")

    def fingerprint(ctx: RunContext) -> Any:
        return {"adapter": spec.model_dump(mode="json"), "constitution": recipe_constitution(rr).hash,
                "weights": recipe.model.train_weights()}

    def run(ctx: RunContext) -> dict[str, Any]:
        out = ctx.dir(stage)
        core = os.path.abspath(ctx.output(CORE_STAGE, "model"))
        if spec.method == "dpo":
            check_label_signal(ctx, spec.allow_weak_labels, stage, data)
        source = str(ctx.output(data, "preferences" if spec.method == "dpo" else "sft"))
        job, train = adapter_job(recipe, name, source, str(out / "train"), core)
        metrics = run_train(ctx, job, train, *ADAPTER_METRICS[spec.method])
        publish_adapter(out / "train" / "adapter", out, core)
        write_region_card(out, region=name, core=ctx.rel(ctx.run_dir / "core" / "model"),
                          base=recipe.model.train_weights(), constitution=recipe_constitution(rr),
                          core_constitution=recipe_constitution(recipe), method=spec.method,
                          data=ctx.rel(Path(source)), metrics=metrics)
        return {"adapter": ctx.rel(out), "model": ctx.rel(out / "train"), "method": spec.method, **metrics}

    return Stage(stage, (CORE_STAGE, data), fingerprint, run)


def publish_adapter(trained: Path, out: Path, core: str) -> None:
    """The trainer's adapter files copied into ``out`` (the region's adapter folder), with
    ``base_model_name_or_path`` naming the core model, so peft, vLLM and ``cai serve`` load it from there.

    >>> import tempfile
    >>> t = Path(tempfile.mkdtemp()); (t / "a").mkdir()
    >>> _ = (t / "a" / "adapter_config.json").write_text('{"base_model_name_or_path": "x", "r": 8}')
    >>> publish_adapter(t / "a", t / "out", "/runs/r/core/model")
    >>> json.loads((t / "out" / "adapter_config.json").read_text())
    {'base_model_name_or_path': '/runs/r/core/model', 'r': 8}
    """
    out.mkdir(parents=True, exist_ok=True)
    for f in trained.iterdir():
        if f.is_file() and f.name != "README.md":
            shutil.copy2(f, out / f.name)
    config = out / "adapter_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = core
    config.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def write_region_card(out: Path, *, region: str, core: str, base: str, constitution: Any,
                      core_constitution: Any, method: str, data: str, metrics: dict[str, Any]) -> Path:
    """``out/README.md``: the hub card of region ``region``'s adapter (core model, constitutions, data)."""
    from huggingface_hub import ModelCard, ModelCardData

    from cai.core.lineage import hub_base_model

    hub = hub_base_model(base)
    meta = ModelCardData(base_model=hub, library_name="peft", pipeline_tag="text-generation",
                         tags=["cai", "constitutional-ai", "lora", f"region-{region}", method],
                         constitution=[{"name": constitution.name, "version": constitution.version,
                                        "hash": constitution.hash}],
                         core_model=core, core_constitution={"name": core_constitution.name,
                                                             "version": core_constitution.version,
                                                             "hash": core_constitution.hash})
    shown = "\n".join(f"- {k}: {v}" for k, v in sorted(metrics.items())) or "- none"
    origin = f", {hub}" if hub and hub != base else ""
    body = (f"# Regional LoRA adapter `{region}` (cai)\n\n"
            f"- core model: `{core}` of this run (trained from `{base}`{origin})\n"
            f"- region constitution: {constitution.name} version {constitution.version} "
            f"(hash `{constitution.hash}`)\n"
            f"- core constitution: {core_constitution.name} version {core_constitution.version} "
            f"(hash `{core_constitution.hash}`)\n"
            f"- trained by: {method} on `{data}`"
            f"{' (reference: the core model, adapter off)' if method == 'dpo' else ''}\n\n"
            f"Load it on the core model (`peft.PeftModel.from_pretrained(core, this_folder)`), serve it with "
            f"`cai serve --run RUN_DIR`, or use the merged copy in `train/`.\n\n"
            f"## Metrics\n\n{shown}\n\n## Region constitution\n\n"
            f"```yaml\n{constitution.to_yaml().rstrip()}\n```\n")
    card = ModelCard(f"---\n{meta.to_yaml()}\n---\n\n{body}")
    path = out / "README.md"
    card.save(path)
    return path


def regional_models(recipe: Recipe, served: Any) -> list[Any]:
    """The layers a regional run's eval compares: ``served(name, stage)`` of ``core`` and of each
    ``core+R`` (its merged copy)."""
    return [served("core", CORE_STAGE),
            *(served(f"core+{r}", region_scope(r).name("adapter")) for r in recipe.regions)]


def regional_matrix(recipe: Recipe, ctx: RunContext) -> dict[str, Any]:
    """The eval's ``matrix``: the sets ``core`` (the core's held-out red-team and look-alike prompts) and
    ``R`` (each region's), with ``core`` the core set and the core model."""
    sets = {"core": _held_out(ctx, "split")}
    sets.update({r: _held_out(ctx, region_scope(r).name("split")) for r in recipe.regions})
    return {"sets": {k: v for k, v in sets.items() if v}, "core_set": "core", "core_model": "core"}


def _held_out(ctx: RunContext, split: str) -> dict[str, Path]:
    out = ctx.outputs[split]
    parts = {"redteam": "eval_redteam", "lookalike": "eval_lookalike"}
    return {kind: ctx.output(split, f) for kind, f in parts.items() if out.get(f"{f}_count")}
