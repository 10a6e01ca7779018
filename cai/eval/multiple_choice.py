"""The evaluation's multiple-choice stage: TruthfulQA and BBQ rows scored by each model while it is loaded.

:func:`load_benchmarks` reads the spec's benchmark files before any model work (a bad row fails at once,
one line naming file, line and field); :func:`score_benchmarks` scores one model's rows (resumable,
``<eval folder>/truthfulqa/<model>.jsonl`` and ``bbq/<model>.jsonl``); :func:`benchmark_figures` turns the
scores into the figures of eval.json. A backend that cannot score whole answers (an OpenAI-compatible
server) leaves the sections empty for that model, with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# rows per score call (saved after each): the call's forward pass holds [answers, answer tokens, vocab]
# logits: TruthfulQA ~7 answers of ~15 tokens a question, BBQ 3 answers of ~4 tokens a row
CHUNKS = {"truthfulqa": 8, "bbq": 32}


def limit_by_category(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``ceil(limit / categories)`` rows of each category, in file order (BBQ's four rows of one
    context, both conditions and polarities, are neighbours in the published files).

    >>> from types import SimpleNamespace as R
    >>> rows = [R(category=c, i=i) for i, c in enumerate("AAAABBBB")]
    >>> [r.i for r in limit_by_category(rows, 4)], len(limit_by_category(rows, None))
    ([0, 1, 4, 5], 8)
    """
    if limit is None:
        return list(rows)
    cats = list(dict.fromkeys(r.category for r in rows))
    per = math.ceil(limit / len(cats)) if cats else 0
    seen = dict.fromkeys(cats, 0)
    out = []
    for r in rows:
        if seen[r.category] < per:
            seen[r.category] += 1
            out.append(r)
    return out


def load_benchmarks(spec: Any) -> dict[str, list[Any]]:
    """The benchmark rows the spec names (task -> rows), each file cut to its limit."""
    from cai.eval.bbq import BBQRow
    from cai.eval.choices import read_rows
    from cai.eval.truthfulqa import TruthfulQARow

    out: dict[str, list[Any]] = {}
    if spec.truthfulqa is not None:
        out["truthfulqa"] = read_rows(spec.truthfulqa, TruthfulQARow, spec.truthfulqa_limit)
    if spec.bbq is not None:
        out["bbq"] = limit_by_category(read_rows(spec.bbq, BBQRow), spec.bbq_limit)
    return out


def items(task: str, rows: Sequence[Any]) -> list[Any]:
    """What is scored for each row of a task."""
    from cai.eval import bbq, truthfulqa

    module = truthfulqa if task == "truthfulqa" else bbq
    return [module.item(r, i) for i, r in enumerate(rows)]


def score_benchmarks(out: Path, rows: dict[str, list[Any]], name: str, model: str, kind: str,
                     make: Callable[[], Any], seed: int,
                     timings: dict[str, float]) -> dict[str, dict[str, Any]]:
    """One model's choice log-probs for every benchmark (task -> row key -> :class:`ChoiceScores`);
    a task the backend cannot score is left out."""
    from cai.backends.protocol import ScoringUnsupported
    from cai.eval.choices import score_choices
    from cai.eval.stage_tools import stage

    scores: dict[str, dict[str, Any]] = {}
    for task, task_rows in rows.items():
        try:
            with stage(f"{task} {name}", timings):
                scores[task] = score_choices(out / task / f"{name}.jsonl", task, items(task, task_rows), name,
                                             model, kind, make, chunk=CHUNKS[task], seed=seed,
                                             desc=f"{task} {name}")
        except ScoringUnsupported as exc:
            log.warning("%s cannot score answers (%s): no %s figures for %s", model, exc, task, name)
    return scores


def benchmark_figures(rows: dict[str, list[Any]], scores: dict[str, dict[str, Any]], seed: int,
                      paths: dict[str, Any]) -> dict[str, Any]:
    """``{"truthfulqa": TruthfulQAEval, "bbq": BBQEval}`` of one model, for the tasks that were run (a task
    it could not score: every row counted as a failure)."""
    from cai.eval.bbq import bbq_eval
    from cai.eval.truthfulqa import truthfulqa_eval

    make = {"truthfulqa": truthfulqa_eval, "bbq": bbq_eval}
    return {task: make[task](task_rows, scores.get(task, {}), seed=seed, data=str(paths[task]))
            for task, task_rows in rows.items()}
