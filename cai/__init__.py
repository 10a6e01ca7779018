"""cai: Constitutional AI and RLAIF toolkit.

Stages are functions over typed JSONL records (:mod:`cai.core.records`, :mod:`cai.core.jsonl`);
constitutions are YAML data (:mod:`cai.constitution.schema`); models sit behind the
:class:`cai.backends.Backend` protocol.

The library API: the stage functions the CLI and ``cai run`` call, their configs, and the records,
importable from here (each is imported on first use, so ``import cai`` stays instant)::

    from cai import BackendSpec, load_constitution, run_critique, run_label, train_dpo

>>> import cai
>>> cai.run_critique.__module__, cai.PromptRecord.__name__
('cai.stages.critique.stage', 'PromptRecord')
>>> sorted(set(cai.__all__) - set(dir(cai)))
[]
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "cai.constitution.load": ("load_constitution", "loads_constitution"),
    "cai.constitution.schema": ("Constitution", "Principle"),
    "cai.backends.protocol": ("Backend", "Generation"),
    "cai.backends.spec": ("BackendSpec",),
    "cai.core.records": ("PromptRecord", "CompletionRecord", "RevisionRecord", "SFTRecord",
                         "PreferenceRecord", "LabelRecord", "SamplingParams", "Message"),
    "cai.core.jsonl": ("read_records", "read_prompts", "JsonlWriter"),
    "cai.core.errors": ("CaiError",),
    "cai.sources.memory": ("as_records",),
    "cai.stages.generate": ("run_generate", "GenerateConfig"),
    "cai.stages.critique.loop": ("CritiqueConfig",),
    "cai.stages.critique.stage": ("run_critique", "CritiqueStageConfig"),
    "cai.stages.label.pairs": ("pairs_from_candidates", "pairs_from_completions", "pairs_from_preferences",
                               "make_pair"),
    "cai.stages.label.stage": ("run_label", "LabelStageConfig"),
    "cai.stages.export": ("to_dataset",),
    "cai.stages.export_files": ("write_export",),
    "cai.train.sft": ("train_sft",),
    "cai.train.reward_model": ("train_reward_model",),
    "cai.train.dpo": ("train_dpo",),
    "cai.train.rl": ("train_rl",),
    "cai.train.ppo.run": ("train_ppo",),
    "cai.eval.spec": ("EvalSpec", "EvalModel"),
    "cai.eval.run": ("evaluate",),
    "cai.run.load": ("load_recipe",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cai' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
