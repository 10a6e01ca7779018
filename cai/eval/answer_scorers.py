"""Scorers of answer records for the evaluation's studies: a preference model, any reward.

A :class:`Scorer` turns :class:`~cai.core.records.CompletionRecord` answers into
values (higher is better; ``None`` where it failed) and carries the identity that
goes into score ids. :func:`score_samples` scores records resumably into a
:class:`~cai.eval.score_lines.ScoreLine` file (the harm judge as a scorer:
:func:`cai.eval.studies.harm_judge_scorer`). Used by the best-of-n study
(:mod:`cai.eval.overoptimization`: the proxy and the gold score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Scorer:
    """Scores answers: ``score(records) -> values`` (higher is better; ``None``: failed on that one).

    ``name`` is its identity in score ids (change it and everything is scored again);
    ``label`` names it in the report; ``make`` loads its model before the progress bar.
    """

    name: str
    score: Callable[[Sequence[Any]], list[float | None]]
    label: str = ""
    make: Callable[[], Any] | None = None


def _chat(rec: Any) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in rec.prompt]


def reward_scorer(name: str, reward: Callable[[Sequence[Any], Sequence[str]], list[float]], *,
                  label: str = "") -> Scorer:
    """Any ``(chats, texts) -> scores`` reward (a :class:`~cai.scoring.reward_scorers.JudgeReward`, ...) as a
    scorer.

    >>> from types import SimpleNamespace as NS
    >>> rec = NS(prompt=[NS(role="user", content="q")], completion=[NS(role="assistant", content="four")])
    >>> reward_scorer("len", lambda chats, texts: [float(len(t)) for t in texts]).score([rec])
    [4.0]
    """
    return Scorer(name, lambda recs: [float(v) for v in reward([_chat(r) for r in recs],
                                                                [r.completion[0].content for r in recs])],
                  label or name)


def pm_scorer(path: str | Path, *, device: str | None = None, dtype: str | None = None, batch_size: int = 8,
              pm: Any = None) -> Scorer:
    """A preference model (a ``cai train rm`` dir), loaded on first use, as a scorer named ``pm:PATH``."""
    cache: dict[str, Any] = {"pm": pm} if pm is not None else {}

    def load() -> Any:
        if "pm" not in cache:
            from cai.scoring.reward_scorers import PreferenceModelReward

            cache["pm"] = PreferenceModelReward(path, device=device, dtype=dtype, batch_size=batch_size)
        return cache["pm"]

    def score(recs: Sequence[Any]) -> list[float | None]:
        return [float(v) for v in load()([_chat(r) for r in recs], [r.completion[0].content for r in recs])]

    return Scorer(f"pm:{path}", score, f"preference model {path}", load)


def score_samples(records: Sequence[Any], scorer: Scorer, path: Path) -> dict[str, float | None]:
    """``scorer``'s value of each record (answer id -> value), scoring only what ``path`` lacks."""
    from cai.eval.score_lines import ScoreLine, fill_scores, score_id, score_line

    def compute(chunk: Sequence[Any]) -> list[ScoreLine]:
        return [score_line(scorer.name, r.id, r.prompt_id, v) for r, v in zip(chunk, scorer.score(chunk))]

    lines = fill_scores(path, records, lambda r: score_id(scorer.name, r.id), compute, make=scorer.make,
                        desc=f"score {scorer.label or scorer.name}")
    return {r.id: lines[score_id(scorer.name, r.id)].value for r in records}
