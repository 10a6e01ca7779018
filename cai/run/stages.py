"""The stages of ``cai run``: the library functions of each command, wired as :class:`cai.run.engine.Stage` objects.

``split`` -> ``critique`` -> ``sft`` -> ``answers`` -> ``label`` -> ``rm`` (optional)
-> ``policy`` (dpo | ppo | rloo | grpo; optional) -> ``eval`` (optional).

Each stage's fingerprint is its recipe section plus what it reads that the
upstream keys do not already cover: the constitution's content hash (so a
changed constitution re-runs ``critique`` and everything after it, and nothing
before), the prompt files' digests, the model's identity. Outputs are recorded
as paths relative to the run directory, so a run directory can be moved.

Data stages live here; training stages in :mod:`cai.run.stages_train`; the
evaluation in :mod:`cai.run.stages_eval`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.core.records import PromptRecord, make_id
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import ModelSpec, Recipe

log = logging.getLogger(__name__)

SPLIT_FILES = ("train_redteam", "eval_redteam", "train_helpful", "eval_helpful")


def is_held_out(prompt: PromptRecord, eval_fraction: float, seed: int = 0) -> bool:
    """Whether a prompt goes to the held-out eval part: a hash of (seed, prompt), not its position.

    >>> ps = [PromptRecord(prompt=f"q{i}") for i in range(200)]
    >>> held = [p for p in ps if is_held_out(p, 0.3)]
    >>> 40 < len(held) < 80, held == [p for p in reversed(ps) if is_held_out(p, 0.3)][::-1]
    (True, True)
    >>> any(is_held_out(p, 0.0) for p in ps)
    False
    """
    return int(make_id("split", seed, prompt.key()), 16) / 16**16 < eval_fraction


def split_prompts(records: Sequence[PromptRecord], eval_fraction: float, seed: int = 0
                  ) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """``(train, held_out)``, each in file order, a prompt listed twice kept once.

    >>> train, held = split_prompts([PromptRecord(prompt="a"), PromptRecord(prompt="a")], 0.0)
    >>> len(train), len(held)
    (1, 0)
    """
    seen: set[str] = set()
    train, held = [], []
    for r in records:
        if r.key() in seen:
            continue
        seen.add(r.key())
        (held if is_held_out(r, eval_fraction, seed) else train).append(r)
    return train, held


def prompt_line(record: PromptRecord) -> str:
    """A prompt record as the ``{"prompt": ..., **metadata}`` line it was read from.

    >>> prompt_line(PromptRecord.model_validate({"prompt": "hi", "category": "x"}))
    '{"prompt": "hi", "category": "x"}'
    """
    prompt = record.prompt if isinstance(record.prompt, str) else [m.model_dump() for m in record.prompt]
    extra = {"id": record.id} if record.id else {}
    return json.dumps({"prompt": prompt, **extra, **record.metadata}, ensure_ascii=False)


def write_prompts(path: Path, records: Sequence[PromptRecord]) -> int:
    path.write_text("".join(prompt_line(r) + "\n" for r in records), encoding="utf-8")
    return len(records)


def rel(ctx: RunContext, path: Path) -> str:
    """A path as stored in ``stage.json``: relative to the run directory."""
    return str(Path(path).relative_to(ctx.run_dir))


def out_path(ctx: RunContext, stage: str, key: str) -> Path:
    """An output path of a finished stage."""
    return ctx.run_dir / ctx.outputs[stage][key]


def make_backend(spec: ModelSpec, model: str | None = None, batch_size: int | None = None) -> Any:
    """A backend for ``spec`` (or for a local model dir ``model`` with spec's hf settings)."""
    from cai.cli import backend_options as bo

    if model is not None:  # a model this run trained: always local
        return bo.backend_from_options("hf", model, batch_size=batch_size or spec.batch_size, device=spec.device,
                                       dtype=spec.dtype, trust_remote_code=spec.trust_remote_code,
                                       chat_template=spec.chat_template)
    return bo.backend_from_options(
        spec.backend, spec.name, base_url=list(spec.base_url) or None, api_key_env=spec.api_key_env,
        concurrency=spec.concurrency, timeout=spec.timeout, max_retries=spec.max_retries,
        batch_size=batch_size or spec.batch_size, device=spec.device, dtype=spec.dtype,
        trust_remote_code=spec.trust_remote_code, chat_template=spec.chat_template)


def progress(ids: Any, writer: Any, desc: str, unit: str) -> Any:
    """A progress bar over ``ids``, starting at those the writer already holds."""
    from tqdm import tqdm

    done = sum(i in writer for i in ids)
    return tqdm(total=len(ids), initial=done, desc=desc, unit=unit)


def constitution(recipe: Recipe):
    from cai.constitution.schema import load_constitution

    return load_constitution(recipe.constitution)


# ----------------------------------------------------------------------------- split


def split_stage(recipe: Recipe) -> Stage:
    spec = recipe.prompts

    def fingerprint(ctx: RunContext) -> Any:
        files = {"redteam": [file_digest(p) for p in spec.redteam], "helpful": [file_digest(p) for p in spec.helpful]}
        return {"prompts": spec.model_dump(mode="json", exclude={"redteam", "helpful"}), "files": files}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.jsonl import read_prompts

        out = ctx.dir("split")
        red = [r for p in spec.redteam for r in read_prompts(p)]
        helpful = [r for p in spec.helpful for r in read_prompts(p)]
        red_train, red_eval = split_prompts(red, spec.eval_fraction, spec.seed)
        help_train, help_eval = split_prompts(helpful, spec.eval_fraction, spec.seed)
        parts = {"train_redteam": red_train[: spec.limit], "eval_redteam": red_eval[: spec.eval_limit],
                 "train_helpful": help_train[: spec.helpful_limit], "eval_helpful": help_eval[: spec.eval_limit]}
        if not parts["train_redteam"]:
            raise CaiError(f"no red-team prompt left for training after the split of {len(red)} prompt(s)",
                           hint="lower prompts.eval_fraction or add prompts")
        outputs: dict[str, Any] = {}
        for name, records in parts.items():
            outputs[f"{name}_count"] = write_prompts(out / f"{name}.jsonl", records)
            outputs[name] = rel(ctx, out / f"{name}.jsonl")
        return outputs

    return Stage("split", (), fingerprint, run)


# ----------------------------------------------------------------------------- critique


def critique_stage(recipe: Recipe) -> Stage:
    spec, model = recipe.critique, recipe.model

    def config():
        from cai.core.records import SamplingParams
        from cai.stages.critique.loop import CritiqueConfig

        return CritiqueConfig(rounds=spec.rounds, samples_per_prompt=spec.samples_per_prompt,
                              no_critique=spec.no_critique, few_shot=spec.few_shot, batch_size=spec.batch_size,
                              params=SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                                                    top_p=spec.top_p, seed=recipe.prompts.seed))

    def fingerprint(ctx: RunContext) -> Any:
        return {"critique": spec.model_dump(mode="json", exclude={"batch_size"}), "model": model.identity(),
                "constitution": constitution(recipe).hash}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.jsonl import JsonlWriter, read_prompts
        from cai.stages.critique.loop import critique_revise, record_id, select_helpful
        from cai.stages.critique.outputs import REVISIONS_FILE, SFT_FILE, derive_outputs

        out, const, cfg = ctx.dir("critique"), constitution(recipe), config()
        records = read_prompts(out_path(ctx, "split", "train_redteam"))
        pool = read_prompts(out_path(ctx, "split", "train_helpful")) if ctx.outputs["split"]["train_helpful_count"] else []
        helpful = select_helpful(pool, round(spec.helpful_ratio * len(records)), recipe.prompts.seed)
        ids = {record_id(kind, r.key(), s, model.name, model.backend, cfg, const.hash)
               for kind, group in (("revision", records), ("helpful", helpful)) for r in group
               for s in range(spec.samples_per_prompt)}
        with JsonlWriter(out / REVISIONS_FILE) as writer:
            if any(i not in writer for i in ids):
                be = make_backend(model, batch_size=spec.batch_size * spec.samples_per_prompt)
                with progress(ids, writer, "critique", "trace") as bar:
                    for rec in critique_revise(records, const, be, cfg, helpful=helpful, done=writer.__contains__,
                                               on_step=lambda name, n: bar.set_postfix_str(f"{name} ({n} chats)")):
                        writer.write(rec)
                        bar.update(1)
        stats = derive_outputs(out, sft_round=spec.sft_round, ids=ids)
        if not stats["sft_rows"]:
            raise CaiError(f"critique: no clean revision or answer for the SFT set ({out / 'stats.json'})",
                           hint="raise critique.max_new_tokens (answers cut short are left out) or add prompts")
        return {"sft": rel(ctx, out / SFT_FILE), "revisions": rel(ctx, out / REVISIONS_FILE),
                "sft_rows": stats["sft_rows"], "revised_pct": stats["revised_pct"], "flagged_pct": stats["flagged_pct"]}

    return Stage("critique", ("split",), fingerprint, run)


# ----------------------------------------------------------------------------- answers and labels


def answers_stage(recipe: Recipe) -> Stage:
    spec = recipe.answers
    deps = ("split", "sft") if spec.source == "sft" else ("split",)

    def fingerprint(ctx: RunContext) -> Any:
        return {"answers": spec.model_dump(mode="json"), "constitution": constitution(recipe).hash,
                "model": recipe.model.identity() if spec.source == "base" else "sft"}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.jsonl import JsonlWriter, read_prompts
        from cai.core.records import SamplingParams
        from cai.stages.generate import completion_id, generate_completions

        out, const = ctx.dir("answers"), constitution(recipe)
        files = ["train_redteam"] + (["train_helpful"] if spec.helpful else [])
        records = [r for f in files for r in read_prompts(out_path(ctx, "split", f))]
        params = SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature, top_p=spec.top_p,
                                n=spec.k, seed=recipe.prompts.seed)
        local = str(out_path(ctx, "sft", "model")) if spec.source == "sft" else None
        model_name = local or recipe.model.name
        kind = "hf" if local else recipe.model.backend
        system = (const.system_prompt or None) if spec.system_prompt else None
        ids = {completion_id(r.key(), model_name, kind, params, system, s) for r in records for s in range(spec.k)}
        path = out / "candidates.jsonl"
        with JsonlWriter(path) as writer:
            if any(i not in writer for i in ids):
                be = make_backend(recipe.model, model=local)
                with progress(ids, writer, "answers", "answer") as bar:
                    for rec in generate_completions(records, be, params, system_prompt=system,
                                                    constitution=const.ref(), done=writer.__contains__):
                        writer.write(rec)
                        bar.update(1)
        return {"candidates": rel(ctx, path), "answers": len(ids), "prompts": len(records)}

    return Stage("answers", deps, fingerprint, run)


def label_stage(recipe: Recipe) -> Stage:
    spec = recipe.label

    def config():
        from cai.stages.label.labeler import LabelConfig

        return LabelConfig(principles_per_pair=spec.principles_per_pair, seed=recipe.prompts.seed, cot=spec.cot,
                           cot_clamp=tuple(spec.cot_clamp), cot_max_new_tokens=spec.cot_max_new_tokens,
                           few_shot=spec.few_shot, batch_size=spec.pairs_per_call)

    def fingerprint(ctx: RunContext) -> Any:
        return {"label": spec.model_dump(mode="json", exclude={"human", "pairs_per_call", "feedback_batch_size"}),
                "feedback_model": recipe.feedback().identity(), "constitution": constitution(recipe).hash,
                "human": [file_digest(p) for p in spec.human]}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.jsonl import JsonlWriter, read_records
        from cai.core.records import CompletionRecord, PreferenceRecord
        from cai.stages.label.labeler import label_id_for, label_records, pairs_from_completions
        from cai.stages.label.outputs import Filters, build_outputs, human_preferences

        out, const, cfg, fb = ctx.dir("label"), constitution(recipe), config(), recipe.feedback()
        cands = read_records(out_path(ctx, "answers", "candidates"), CompletionRecord)
        pairs, report = pairs_from_completions(cands, recipe.answers.pairing)
        ids = list(dict.fromkeys(label_id_for(p.id, fb.name, fb.backend, const, cfg) for p in pairs))
        with JsonlWriter(out / "labels.jsonl") as writer:
            if any(i not in writer for i in ids):
                be = make_backend(fb, batch_size=spec.feedback_batch_size)
                with progress(ids, writer, "label", "pair") as bar:
                    for rec in label_records(pairs, be, const, cfg, done=writer.__contains__):
                        writer.write(rec)
                        bar.update(1)
        humans = [h for p in spec.human for h in human_preferences(read_records(p, PreferenceRecord), spec.human_weight)]
        stats = build_outputs(out, ids, Filters(min_confidence=spec.min_confidence,
                                                drop_inconsistent=spec.drop_inconsistent), humans,
                              extra={"feedback_model": fb.name, "constitution": const.ref().model_dump(),
                                     "config": cfg.identity(), "pairing": report.__dict__})
        total = stats["preferences"]["total"]
        if not total:
            raise CaiError(f"label: no preference pair kept ({out / 'stats.json'})",
                           hint="lower label.min_confidence, or sample more answers (answers.k)")
        return {"preferences": rel(ctx, out / "preferences.jsonl"), "pairs": len(pairs), "preferences_count": total}

    return Stage("label", ("answers",), fingerprint, run)


def build_stages(recipe: Recipe) -> list[Stage]:
    """The recipe's stages, in order (only those it enables)."""
    from cai.run.stages_eval import eval_stage
    from cai.run.stages_train import policy_stage, rm_stage, sft_stage

    makers = {"split": split_stage, "critique": critique_stage, "sft": sft_stage, "answers": answers_stage,
              "label": label_stage, "rm": rm_stage, "policy": policy_stage, "eval": eval_stage}
    return [makers[name](recipe) for name in recipe.stage_names()]
