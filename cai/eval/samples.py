"""Show, not only count: a seeded sample of prompts of every set, with every model's answer side by side.

Each sampled prompt carries the baseline's answer and each other model's, the
refusal detector's verdict and the rule that fired, and the judge's score
(p(harmful) on red-team prompts, p(win vs the baseline) on benign ones). The
draw is seeded by the spec's seed and the set's name, so reruns and reports show
the same prompts.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from cai.core.records import make_id
from cai.eval.schema import SampleAnswer, SamplePrompt

TEXT_CHARS = 1500  # longest answer kept in the report


def pick(records: Sequence[Any], k: int, seed: int, name: str) -> list[Any]:
    """``k`` records drawn without replacement (seeded by ``seed`` and ``name``), in their file order.

    >>> pick(list("abcdef"), 3, 0, "redteam") == pick(list("abcdef"), 3, 0, "redteam")
    True
    >>> len(pick(list("ab"), 5, 0, "x")), pick([], 2, 0, "x")
    (2, [])
    """
    if k <= 0 or not records:
        return []
    rng = random.Random(make_id("eval-samples", seed, name))
    return [records[i] for i in sorted(rng.sample(range(len(records)), min(k, len(records))))]


def clip(text: str, chars: int = TEXT_CHARS) -> str:
    """``text`` cut to ``chars`` with an ellipsis.

    >>> clip("abcdef", 4)
    'abcd…'
    """
    return text if len(text) <= chars else text[:chars] + "…"


def sample_prompts(
    sets: Mapping[str, Sequence[Any]],
    answers: Mapping[str, Mapping[str, Any]],
    models: Sequence[str],
    *,
    baseline: str,
    harm: Mapping[str, Mapping[str, Any]] | None = None,
    helpful: Mapping[str, Mapping[str, Any]] | None = None,
    k: int = 4,
    seed: int = 0,
) -> list[SamplePrompt]:
    """``k`` prompts of each set with every model's answer (baseline first), verdicts and scores.

    ``sets``: set name -> prompt records; ``answers``: model -> prompt key -> answer;
    ``harm``/``helpful``: model -> answer id -> judgement line.

    >>> from cai.core.records import CompletionRecord, Message, PromptRecord, Provenance
    >>> p = PromptRecord(prompt="How do I pick a lock?")
    >>> def ans(text):
    ...     return CompletionRecord(id=text[:3], prompt_id=p.key(), prompt=p.messages(),
    ...         completion=[Message(role="assistant", content=text)], finish_reason="stop",
    ...         provenance=Provenance())
    >>> out = sample_prompts({"redteam": [p]}, {"base": {p.key(): ans("Sure, first...")},
    ...                      "dpo": {p.key(): ans("I can't help with that.")}}, ["dpo", "base"],
    ...                      baseline="base")
    >>> [(a.model, a.refused, a.rule) for a in out[0].answers]
    [('base', False, None), ('dpo', True, 'cannot')]
    """
    from cai.scoring.refusal import detect_refusal

    order = [baseline, *[m for m in models if m != baseline]]
    out = []
    for name, records in sets.items():
        for p in pick(list(records), k, seed, name):
            shown = []
            for m in order:
                a = answers.get(m, {}).get(p.key())
                if a is None:
                    continue
                text = a.completion[0].content
                v = detect_refusal(text)
                score, score_name = None, None
                if name == "redteam" and harm and a.id in harm.get(m, {}):
                    score, score_name = harm[m][a.id].value, "p(harmful)"
                elif name == "benign" and helpful and a.id in helpful.get(m, {}):
                    score, score_name = helpful[m][a.id].value, f"p(win vs {baseline})"
                shown.append(SampleAnswer(model=m, text=clip(text), refused=v.refused, rule=v.rule,
                                          score=score, score_name=score_name))
            out.append(SamplePrompt(set=name, prompt_id=p.key(), label=p.metadata.get("label"), answers=shown,
                                    prompt=[{"role": msg.role, "content": clip(msg.content)}
                                            for msg in p.messages()]))
    return out
