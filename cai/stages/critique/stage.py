"""The SL-CAI stage as one function: traces appended to ``revisions.jsonl``, then the derived SFT set and
stats.

:func:`run_critique` is what ``cai critique`` and ``cai run``'s ``critique`` stage both call:

1. the helpful prompts mixed in are picked from their pool by a hash of (seed, prompt id);
2. every trace (prompt x sample) not yet in ``revisions.jsonl`` is made by
   :func:`cai.stages.critique.loop.critique_revise` and appended as it finishes
   (:func:`cai.core.resume.fill_jsonl`: a rerun resumes, Ctrl-C says how);
3. with ``sft_source: best``, the feedback model judges each clean revision against
   its initial answer (:func:`cai.stages.critique.best.judge_best`, appended to
   ``judgements.jsonl``; its verdicts count only when they carry signal);
4. ``sft.jsonl``, ``stats.json`` (and ``pairs_revision.jsonl``) are rebuilt from the
   traces of these settings (:func:`cai.stages.critique.outputs.derive_outputs`),
   every trace re-checked by today's cleaning rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cai.backends.protocol import Backend
from cai.backends.spec import BackendSpec
from cai.constitution.schema import Constitution
from cai.core.records import PromptRecord, RevisionRecord
from cai.core.resume import fill_jsonl
from cai.stages.critique.loop import CritiqueConfig, critique_revise, record_id, select_helpful
from cai.stages.critique.outputs import REVISIONS_FILE, SFTSource, derive_outputs

log = logging.getLogger(__name__)


class CritiqueStageConfig(BaseModel):
    """Everything the stage does besides the model: the loop's settings and what the SFT set is made of."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    loop: CritiqueConfig = CritiqueConfig()
    helpful_ratio: float = Field(1.0, ge=0)
    sft_round: int | None = Field(None, ge=1)
    revision_pairs: bool = False
    sft_source: SFTSource = "revision"  # revision | initial (context distillation) | best
    refusal_gate: bool = False  # red-team targets must decline and helpful ones must not (refusal detector)
    trim_truncated: bool = False  # an answer cut at max_new_tokens: trimmed to its last sentence, not dropped

    @model_validator(mode="after")
    def _rounds(self) -> CritiqueStageConfig:
        if self.loop.rounds == 0 and self.sft_source != "initial":
            raise ValueError(f"rounds 0 makes no revision to train on: sft_source {self.sft_source!r} needs "
                             "rounds >= 1 (or use sft_source initial)")
        return self


def trace_ids(records: Sequence[PromptRecord], helpful: Sequence[PromptRecord], spec: BackendSpec,
              config: CritiqueConfig, constitution: Constitution) -> set[str]:
    """The ids of every trace of these prompts and settings (what the derived files are made of)."""
    return {record_id(kind, r.key(), s, spec.name, spec.backend, config, constitution.hash)
            for kind, group in (("revision", records), ("helpful", helpful)) for r in group
            for s in range(config.samples_for(kind))}


def run_critique(
    records: Sequence[PromptRecord],
    constitution: Constitution,
    spec: BackendSpec,
    config: CritiqueStageConfig,
    out_dir: Path,
    *,
    helpful_pool: Sequence[PromptRecord] = (),
    resume: bool = True,
    feedback: BackendSpec | None = None,
) -> dict[str, Any]:
    """Critique and revise ``records`` (plus helpful answers from ``helpful_pool``); return the stats.

    ``feedback`` is the judge of ``sft_source: best`` (default: the policy model).
    """
    loop = config.loop
    k = round(config.helpful_ratio * len(records))
    if k > len(helpful_pool) and helpful_pool:
        log.warning("helpful ratio %s asks for %d helpful prompts but the pool has %d: using all",
                    config.helpful_ratio, k, len(helpful_pool))
    helpful = select_helpful(helpful_pool, k, loop.params.seed)
    ids = trace_ids(records, helpful, spec, loop, constitution)
    path = Path(out_dir) / REVISIONS_FILE

    def produce(backend: Backend, done: Callable[[str], bool], bar: Any) -> Iterator[RevisionRecord]:
        log.info("critiquing %d prompt(s) + %d helpful x %d sample(s), %d round(s)%s, constitution %s %s, "
                 "%s model %s -> %s; %d of %d trace(s) already there", len(records), len(helpful),
                 loop.samples_per_prompt, loop.rounds, " without critiques" if loop.no_critique else "",
                 constitution.name, constitution.version, spec.backend, spec.name, path, bar.n, len(ids))
        return critique_revise(records, constitution, backend, loop, helpful=helpful, done=done,
                               on_step=lambda name, n: bar.set_postfix_str(f"{name} ({n} chats)"))

    local = spec.with_batch_size(loop.batch_size * loop.samples_per_prompt)
    fill_jsonl(path, ids, local.build, produce, what="trace", desc="critique", resume=resume)
    judged, judge = None, None
    if config.sft_source == "best":
        from cai.backends.spec import LazyBackend
        from cai.stages.critique.best import judge_best
        from cai.stages.label.feedback import FeedbackReader

        reader = FeedbackReader(LazyBackend(feedback or spec), constitution, seed=loop.params.seed)
        judged, judge = judge_best(out_dir, ids, reader, constitution, config.sft_round)
    return derive_outputs(out_dir, sft_round=config.sft_round, revision_pairs=config.revision_pairs, ids=ids,
                          sft_source=config.sft_source, judged=judged,
                          judge_signal=bool(judge and judge["signal"]),
                          judge=judge, constitution=constitution, refusal_gate=config.refusal_gate,
                          trim_truncated=config.trim_truncated)
