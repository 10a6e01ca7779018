"""The RLAIF labelling stage as one function: labels appended to ``labels.jsonl``, then preferences and stats.

:func:`run_label` is what ``cai label`` and ``cai run``'s ``label`` stage both call;
:func:`label_into` is its labelling loop, which ``cai audit labeler`` shares:

1. every pair whose label (an id of the pair, the feedback model, the constitution
   and the settings) is not yet in the file is labelled by
   :func:`cai.stages.label.labeler.label_records` and appended as it is made
   (:func:`cai.core.resume.fill_jsonl`: a rerun resumes, Ctrl-C says how);
2. ``preferences.jsonl`` and ``stats.json`` are rebuilt from the labels with the
   filters and the human pairs (:func:`cai.stages.label.outputs.build_outputs`),
   so other filters never re-run the model.
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
from cai.core.jsonl import read_records
from cai.core.records import LabelRecord, PreferenceRecord
from cai.core.resume import fill_jsonl
from cai.stages.label.labeler import LabelConfig, label_id_for, label_records
from cai.stages.label.outputs import Filters, build_outputs, human_preferences
from cai.stages.label.pairs import Pair
from cai.stages.label.pools import PoolWeighting, apply_pool_weights

log = logging.getLogger(__name__)

LABELS_FILE = "labels.jsonl"


class LabelStageConfig(BaseModel):
    """How pairs are labelled and which labels become preferences (the recipe's ``label:`` keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    principles_per_pair: int = Field(1, ge=1)
    seed: int = 0
    cot: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    cot_max_new_tokens: int = Field(256, ge=1)
    few_shot: bool = True
    pairs_per_call: int = Field(8, ge=1)
    min_confidence: float = 0.5
    drop_inconsistent: bool = False
    keep_ties: bool = False
    human_weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> LabelStageConfig:
        self.labeler(), self.filters()  # their one-line errors (--cot-clamp, --min-confidence) come now
        return self

    def labeler(self) -> LabelConfig:
        """The labelling loop's settings (what goes into each label's id)."""
        return LabelConfig(principles_per_pair=self.principles_per_pair, seed=self.seed, cot=self.cot,
                           cot_clamp=tuple(self.cot_clamp), cot_max_new_tokens=self.cot_max_new_tokens,
                           few_shot=self.few_shot, batch_size=self.pairs_per_call)

    def filters(self) -> Filters:
        return Filters(min_confidence=self.min_confidence, drop_inconsistent=self.drop_inconsistent,
                       keep_ties=self.keep_ties)


def label_ids(pairs: Sequence[Pair], feedback: BackendSpec, constitution: Constitution,
              config: LabelConfig) -> list[str]:
    """The label id of every pair, in pair order, each once."""
    return list(dict.fromkeys(label_id_for(p.id, feedback.name, feedback.backend, constitution, config)
                              for p in pairs))


def label_into(path: Path, pairs: Sequence[Pair], constitution: Constitution, feedback: BackendSpec,
               config: LabelConfig, *, backend: Callable[[], Backend] | None = None, what: str = "label",
               desc: str = "label") -> list[str]:
    """Append to ``path`` the label of every pair it lacks; return the ids of all of them.

    ``backend()`` (optional) gives an already built backend for ``feedback`` (the
    policy's, when the feedback model is the policy).
    """
    ids = label_ids(pairs, feedback, constitution, config)

    def produce(be: Backend, done: Callable[[str], bool], bar: Any) -> Iterator[LabelRecord]:
        log.info("labelling %d pair(s) (%d already in %s) with %s feedback model %s, %d "
                 "principle(s) per pair, both orders%s", len(ids) - bar.n, bar.n, path, feedback.backend,
                 feedback.name, config.principles_per_pair, ", chain of thought" if config.cot else "")
        return label_records(pairs, be, constitution, config, done=done)

    fill_jsonl(path, ids, backend or feedback.build, produce, what=what, desc=desc)
    return ids


def read_humans(files: Sequence[Path], weight: float, pools: PoolWeighting | None = None
                ) -> list[PreferenceRecord]:
    """Human preference pairs to merge, as ``source: human`` records weighted by ``weight`` (read before any
    work), then by pool over all the files together (``pools``: see
    :func:`cai.stages.label.pools.pool_weights`)."""
    humans = [h for f in files for h in human_preferences(read_records(f, PreferenceRecord), weight)]
    return apply_pool_weights(humans, pools)[0] if pools is not None and pools.active else humans


def run_label(
    pairs: Sequence[Pair],
    constitution: Constitution,
    feedback: BackendSpec,
    config: LabelStageConfig,
    out_dir: Path,
    *,
    humans: Sequence[PreferenceRecord] = (),
    extra: dict[str, Any] | None = None,
    backend: Callable[[], Backend] | None = None,
    audit: dict[str, Any] | None = None,
    pools: PoolWeighting | None = None,
) -> dict[str, Any]:
    """Label ``pairs`` into ``out_dir/labels.jsonl``, rebuild ``preferences.jsonl`` and ``stats.json``; the
    stats.

    ``humans`` (from :func:`read_humans`) are merged in after the AI labels (``pools``: the weighting they
    were read with, reported in ``stats["pools"]``); ``audit`` (a
    ``cai audit labeler`` result for this feedback model) joins the signal verdict, ``stats["signal"]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labeler = config.labeler()
    ids = label_into(out / LABELS_FILE, pairs, constitution, feedback, labeler, backend=backend)
    facts = {"feedback_model": feedback.name, "feedback_backend": feedback.backend,
             "constitution": constitution.ref().model_dump(), "config": labeler.identity(), **(extra or {})}
    return build_outputs(out, ids, config.filters(), humans, extra=facts, audit=audit, pools=pools)
