"""The stages of ``cai run``, in order: the one place that knows every stage.

``split`` -> ``critique`` -> ``sft`` -> ``answers`` -> ``label`` -> ``rm`` (optional)
-> ``policy`` (dpo | ppo | rloo | grpo; optional) -> [``answers_rN`` -> ``label_rN`` -> ``policy_rN``
for each later round of ``rounds: N``] -> ``eval`` (optional).
"""

from __future__ import annotations

from collections.abc import Callable

from cai.run.data_stages import answers_stage, critique_stage, label_stage, split_stage
from cai.run.engine import Stage
from cai.run.eval_stage import eval_stage
from cai.run.recipe import Recipe
from cai.run.train_stages import policy_stage, rm_stage, sft_stage

MAKERS: dict[str, Callable[..., Stage]] = {  # (recipe) or, for a later round, (recipe, round)
    "split": split_stage, "critique": critique_stage, "sft": sft_stage, "answers": answers_stage,
    "label": label_stage, "rm": rm_stage, "policy": policy_stage, "eval": eval_stage,
}


def build_stages(recipe: Recipe) -> list[Stage]:
    """The recipe's stages, in order (only those it enables; a later round's ``answers_r2`` is
    ``answers_stage(recipe, 2)``; ``core`` and ``regions/R/...``: :mod:`cai.run.regions`)."""
    from cai.run.regions import CORE_STAGE, core_stage, region_stage

    stages = []
    for name in recipe.stage_names():
        if name == CORE_STAGE or name.startswith("regions/"):
            stages.append(core_stage(recipe) if name == CORE_STAGE else region_stage(recipe, name))
            continue
        base, _, r = name.partition("_r")
        stages.append(MAKERS[base](recipe, int(r)) if r else MAKERS[name](recipe))
    return stages
