"""The data stages of ``cai run``: ``split``, ``critique``, ``answers`` and ``label``.

Each is a :class:`~cai.run.engine.Stage` whose ``run`` turns its recipe section
into the stage's config and calls the same library function as its command
(:func:`~cai.stages.critique.stage.run_critique`,
:func:`~cai.stages.generate.run_generate`, :func:`~cai.stages.label.stage.run_label`).
A stage's fingerprint is its recipe section plus what it reads that the upstream
keys do not already cover: the constitution's content hash (a changed constitution
re-runs ``critique`` and everything after it, nothing before), the prompt files'
digests, the model's identity. Outputs are paths relative to the run directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.core.errors import CaiError
from cai.core.records import PromptRecord, make_id
from cai.run.engine import RunContext, Stage, file_digest
from cai.run.recipe import Recipe, recipe_constitution, round_stage

log = logging.getLogger(__name__)

SPLIT_FILES = ("train_redteam", "eval_redteam", "train_helpful", "eval_helpful")


@dataclass(frozen=True)
class Scope:
    """Where a chain of data stages lives: the core's (plain names, sampling the recipe's model) or a
    region's (``regions/<name>/split`` ..., sampling the model the ``start`` stage wrote: the core policy).

    >>> Scope().name("critique"), Scope("regions/eu/", "core").name("critique")
    ('critique', 'regions/eu/critique')
    """

    prefix: str = ""
    start: str | None = None  # the stage whose ``model`` output the policy samples come from

    def name(self, stage: str) -> str:
        return self.prefix + stage

    def checkpoint(self, ctx: RunContext) -> Path | None:
        """The policy checkpoint this scope samples (None: the recipe's model itself)."""
        return ctx.output(self.start, "model") if self.start else None


CORE = Scope()


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


def split_stage(recipe: Recipe, scope: Scope = CORE) -> Stage:
    spec, stage = recipe.prompts, scope.name("split")

    def fingerprint(ctx: RunContext) -> Any:
        files = {"redteam": [file_digest(p) for p in spec.redteam],
                 "helpful": [file_digest(p) for p in spec.helpful],
                 **({"lookalike": file_digest(spec.lookalike)} if spec.lookalike else {})}
        return {"prompts": spec.model_dump(mode="json", exclude={"redteam", "helpful", "lookalike"}),
                "files": files}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.jsonl import read_prompts

        out = ctx.dir(stage)
        red = [r for p in spec.redteam for r in read_prompts(p)]
        helpful = [r for p in spec.helpful for r in read_prompts(p)]
        red_train, red_eval = split_prompts(red, spec.eval_fraction, spec.seed)
        help_train, help_eval = split_prompts(helpful, spec.eval_fraction, spec.seed)
        parts = {"train_redteam": red_train[: spec.limit], "eval_redteam": red_eval[: spec.eval_limit],
                 "train_helpful": help_train[: spec.helpful_limit],
                 "eval_helpful": help_eval[: spec.eval_limit]}
        if spec.lookalike is not None:  # the train part's twins join the training prompts; the rest is eval
            from cai.eval.answers import check_labels

            look = read_prompts(spec.lookalike)
            check_labels(spec.lookalike, look)
            fraction = spec.lookalike_eval_fraction or spec.eval_fraction
            look_train, parts["eval_lookalike"] = split_prompts(look, fraction, spec.seed)
            parts["train_redteam"] += [r for r in look_train if r.metadata["label"] == "unsafe"]
            parts["train_helpful"] += [r for r in look_train if r.metadata["label"] == "safe"]
        if not parts["train_redteam"]:
            raise CaiError(f"no red-team prompt left for training after the split of {len(red)} prompt(s)",
                           hint="lower prompts.eval_fraction or add prompts")
        outputs: dict[str, Any] = {}
        for name, records in parts.items():
            outputs[f"{name}_count"] = write_prompts(out / f"{name}.jsonl", records)
            outputs[name] = ctx.rel(out / f"{name}.jsonl")
        return outputs

    return Stage(stage, (), fingerprint, run)


def _split_prompts(ctx: RunContext, name: str, scope: Scope = CORE) -> list[PromptRecord]:
    from cai.core.jsonl import read_prompts

    split = scope.name("split")
    return read_prompts(ctx.output(split, name)) if ctx.outputs[split][f"{name}_count"] else []


def critique_stage(recipe: Recipe, scope: Scope = CORE) -> Stage:
    spec, name = recipe.critique, scope.name("critique")
    model = recipe.model.with_dtype(spec.dtype)

    def fingerprint(ctx: RunContext) -> Any:
        judge = recipe.feedback().identity() if spec.sft_source == "best" else None
        return {"critique": spec.model_dump(mode="json", exclude={"batch_size"}), "model": model.identity(),
                "constitution": recipe_constitution(recipe).hash, **({"judge": judge} if judge else {})}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.run.engines import sampling_spec
        from cai.stages.critique.outputs import REVISIONS_FILE, SFT_FILE
        from cai.stages.critique.stage import run_critique

        out = ctx.dir(name)
        policy = sampling_spec(ctx, recipe.model, "policy", scope.checkpoint(ctx), dtype=spec.dtype)
        judge = sampling_spec(ctx, recipe.feedback(), "feedback") if spec.sft_source == "best" else None
        stats = run_critique(_split_prompts(ctx, "train_redteam", scope), recipe_constitution(recipe), policy,
                             spec.stage_config(recipe.prompts.seed), out,
                             helpful_pool=_split_prompts(ctx, "train_helpful", scope), feedback=judge)
        if not stats["sft_rows"]:
            raise CaiError(f"{name}: no clean revision or answer for the SFT set ({out / 'stats.json'})",
                           hint="raise critique.max_new_tokens (answers cut short are left out) "
                                "or add prompts")
        check_survivors(stats, spec.min_sft_fraction, out / "stats.json")
        return {"sft": ctx.rel(out / SFT_FILE), "revisions": ctx.rel(out / REVISIONS_FILE),
                "sft_rows": stats["sft_rows"], "revised_pct": stats["revised_pct"],
                "flagged_pct": stats["flagged_pct"]}

    return Stage(name, (scope.name("split"), *((scope.start,) if scope.start else ())), fingerprint, run)


def check_survivors(stats: dict[str, Any], min_fraction: float, where: Path) -> None:
    """Stop before training when the gates left (nearly) no red-team trace to train on, saying why.

    >>> check_survivors({"revision_records": 40, "sft_revision_rows": 12, "sft_initial_rows": 0},
    ...                 0.1, Path("s"))
    >>> check_survivors({"revision_records": 40, "sft_revision_rows": 2, "sft_initial_rows": 0,
    ...                  "left_out_why": {"off-topic": 30, "truncated": 8}}, 0.1,
    ...                 Path("s.json"))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: critique: only 2 of 40 red-team trace(s) passed the gates (5%, below the 10%
    asked; left out: off-topic 30, truncated 8; see s.json): training would teach almost nothing (fix: set
    critique.sft_source: initial (context distillation) or best, use a larger model, or lower
    critique.min_sft_fraction)
    """
    total = stats.get("revision_records", 0)
    kept = stats.get("sft_revision_rows", 0) + stats.get("sft_initial_rows", 0)
    if not total or kept >= min_fraction * total:
        return
    why = ", ".join(f"{k} {v}"
                    for k, v in sorted((stats.get("left_out_why") or {}).items(), key=lambda kv: -kv[1]))
    raise CaiError(f"critique: only {kept} of {total} red-team trace(s) passed the gates "
                   f"({kept / total:.0%}, below the {min_fraction:.0%} asked; left out: "
                   f"{why or 'see the stats'}; see {where}): "
                   "training would teach almost nothing",
                   hint="set critique.sft_source: initial (context distillation) or best, use a "
                        "larger model, or lower critique.min_sft_fraction")


def answers_stage(recipe: Recipe, r: int = 1, scope: Scope = CORE) -> Stage:
    """Candidate answers to label. Round 1: from ``answers.source``; a later round (``rounds: N``) samples
    the previous round's policy with the same settings (on-policy pairs, as in iterative DPO). In a
    region's scope ``sft`` and ``base`` both mean the core policy (``scope.start``)."""
    spec, name, split = recipe.answers, scope.name(round_stage("answers", r)), scope.name("split")
    source = spec.source if r == 1 else round_stage("policy", r - 1)
    if scope.start and source != "critique":
        source = scope.start
    deps = ((split, source) if source not in ("base", "critique")
            else (split,) if source == "base" else (scope.name("critique"),))

    def fingerprint(ctx: RunContext) -> Any:
        return {"answers": spec.model_dump(mode="json"), "constitution": recipe_constitution(recipe).hash,
                "model": recipe.model.identity() if source == "base" else source,
                **({"engine": recipe.model.identity()["engine"]} if recipe.model.engine != "local" else {})}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.core.records import SamplingParams
        from cai.stages.generate import GenerateConfig, run_generate

        out, const = ctx.dir(name), recipe_constitution(recipe)
        if source == "critique":
            from cai.stages.critique.outputs import initial_answers

            n = initial_answers(ctx.output(scope.name("critique"), "revisions"), out / "candidates.jsonl",
                                spec.helpful)
            return {"candidates": ctx.rel(out / "candidates.jsonl"), "answers": n}
        records = (_split_prompts(ctx, "train_redteam", scope)
                   + (_split_prompts(ctx, "train_helpful", scope) if spec.helpful else []))
        params = SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                                top_p=spec.top_p, n=spec.k, seed=recipe.prompts.seed + r - 1)
        system = (const.system_prompt or None) if spec.system_prompt else None
        from cai.run.engines import sampling_spec

        model = sampling_spec(ctx, recipe.model, "policy",
                              ctx.output(source, "model") if source != "base" else None, dtype=spec.dtype)
        path = out / "candidates.jsonl"
        done = run_generate(records, path, model, GenerateConfig(params=params, system_prompt=system),
                            constitution=const.ref(), desc=name)
        return {"candidates": ctx.rel(path), "answers": done.wanted, "prompts": len(records)}

    return Stage(name, deps, fingerprint, run)


def label_stage(recipe: Recipe, r: int = 1, scope: Scope = CORE) -> Stage:
    """AI labels of the candidate pairs of round ``r`` (its own folder, keys and stats)."""
    spec, name = recipe.label, scope.name(round_stage("label", r))
    answers = scope.name(round_stage("answers", r))

    def fingerprint(ctx: RunContext) -> Any:
        return {"label": spec.model_dump(mode="json",
                                         exclude={"human", "human_pools", "pairs_per_call",
                                                  "feedback_batch_size"}),
                "feedback_model": recipe.feedback().identity(),
                "constitution": recipe_constitution(recipe).hash,
                "human": [file_digest(p) for p in spec.human],
                **({"human_pools": spec.human_pools.model_dump(mode="json")} if spec.human_pools else {}),
                **({"labeler_audit": file_digest(spec.labeler_audit)} if spec.labeler_audit else {})}

    def run(ctx: RunContext) -> dict[str, Any]:
        from cai.stages.label.pairs import pairs_from_candidates
        from cai.stages.label.stage import read_humans, run_label

        config = spec.stage_config(recipe.prompts.seed)
        humans = read_humans(spec.human, spec.human_weight, spec.human_pools)
        pairs, report = pairs_from_candidates(ctx.output(answers, "candidates"),
                                              pairing=recipe.answers.pairing)
        from cai.run.engines import sampling_spec

        feedback = sampling_spec(ctx, recipe.feedback(), "feedback").with_batch_size(spec.feedback_batch_size)
        audit = None
        if spec.labeler_audit:
            from cai.eval.inputs import load_audit

            audit = load_audit(spec.labeler_audit)
        stats = run_label(pairs, recipe_constitution(recipe), feedback, config, ctx.dir(name),
                          humans=humans, extra={"pairing": report.__dict__}, audit=audit,
                          pools=spec.human_pools)
        total = stats["preferences"]["total"]
        if not total:
            raise CaiError(f"{name}: no preference pair kept ({ctx.dir(name) / 'stats.json'})",
                           hint="lower label.min_confidence, or sample more answers (answers.k)")
        signal = stats.get("signal") or {}
        if not signal.get("signal"):
            log.warning("%s: the AI labels carry no signal (%s): the policy stage will refuse to "
                        "train on them alone", name, "; ".join(signal.get("reasons", [])))
        return {"preferences": ctx.rel(ctx.dir(name) / "preferences.jsonl"), "pairs": len(pairs),
                "preferences_count": total, "signal": "yes" if signal.get("signal") else "no",
                "signal_reasons": signal.get("reasons", [])}

    return Stage(name, (answers,), fingerprint, run)
