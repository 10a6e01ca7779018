"""The stages of ``cai run``, in order: the one place that knows every stage.

``split`` -> ``critique`` -> ``sft`` -> ``answers`` -> ``label`` -> ``rm`` (optional)
-> ``policy`` (dpo | ppo | rloo | grpo; optional) -> ``eval`` (optional).
"""

from __future__ import annotations

from collections.abc import Callable

from cai.run.data_stages import answers_stage, critique_stage, label_stage, split_stage
from cai.run.engine import Stage
from cai.run.eval_stage import eval_stage
from cai.run.recipe import Recipe
from cai.run.train_stages import policy_stage, rm_stage, sft_stage

MAKERS: dict[str, Callable[[Recipe], Stage]] = {
    "split": split_stage, "critique": critique_stage, "sft": sft_stage, "answers": answers_stage,
    "label": label_stage, "rm": rm_stage, "policy": policy_stage, "eval": eval_stage,
}


def build_stages(recipe: Recipe) -> list[Stage]:
    """The recipe's stages, in order (only those it enables)."""
    return [MAKERS[name](recipe) for name in recipe.stage_names()]
