"""`cai audit pools`: annotator pools against each other and against the AI labeler, and what each weighs.

Reads human preference files whose rows carry ``pool``, and writes ``audit.json``:
``weights`` (the effective weight of each pool under the given weighting, as ``cai run``'s
label stage would give it: :func:`cai.stages.label.pools.pool_weights`), ``agreement``
(:func:`cai.stages.label.pools.pool_agreement`: each pool against the others, every two
pools, and every pair they disagree on) and, with ``labels`` (AI labels of the same
pairs, e.g. the ``labels.jsonl`` of ``cai audit labeler --data HUMANFILE``), ``ai``
(:func:`cai.stages.label.pools.ai_agreement`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.atomic_files import write_json_atomic
from cai.core.errors import CaiError
from cai.core.jsonl import read_records
from cai.core.records import LabelRecord, PreferenceRecord
from cai.stages.label.pools import PoolWeighting, ai_agreement, apply_pool_weights, pool_agreement

log = logging.getLogger(__name__)


def pools_audit(humans: Sequence[PreferenceRecord], labels: Sequence[LabelRecord] | None = None,
                weighting: PoolWeighting | None = None) -> dict[str, Any]:
    """The audit of already read rows (see the module doc); ``ai`` is None without labels."""
    weighting = weighting or PoolWeighting()
    _, effective = apply_pool_weights(humans, weighting)
    return {"kind": "pools", "rows": len(humans),
            "weighting": {"pools": dict(weighting.pools), "balance": weighting.balance},
            "weights": effective, "agreement": pool_agreement(humans),
            "ai": ai_agreement(humans, labels) if labels is not None else None}


def run_pools_audit(human_files: Sequence[Path], out_dir: Path, *, labels: Path | None = None,
                    weighting: PoolWeighting | None = None) -> dict[str, Any]:
    """Read the files, audit them, write ``out_dir/audit.json``; return the audit."""
    if not human_files:
        raise CaiError("cai audit pools needs --human FILE", hint="e.g. --human eu.jsonl --human us.jsonl "
                       "(rows with prompt/chosen/rejected and pool)")
    humans = [r for f in human_files for r in read_records(f, PreferenceRecord)]
    if not humans:
        raise CaiError(f"{', '.join(map(str, human_files))}: no human preference rows",
                       hint="write one {prompt, chosen, rejected, pool} object a line")
    ai = read_records(labels, LabelRecord) if labels is not None else None
    audit = pools_audit(humans, ai, weighting)
    audit.update(files=[str(f) for f in human_files], labels_file=str(labels) if labels else None)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out_dir) / "audit.json", audit)
    return audit


def _rate(d: dict[str, Any] | None) -> str:
    if not d or d.get("rate") is None:
        return "n/a"
    return f"{100 * d['rate']:.1f}% [{100 * d['lo']:.1f}, {100 * d['hi']:.1f}] n={d['n']}"


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def format_pools_audit(audit: dict[str, Any], show: int = 10) -> str:
    """The audit as a table per pool, every two pools, the first ``show`` disagreements."""
    agree, ai, weights = audit["agreement"], audit["ai"], audit["weights"]
    names = list(weights)
    width = max([4, *map(len, names)])
    lines = [f"{'pool':<{width}}  {'rows':>5}  {'pairs':>5}  {'agrees with the other pools':<30}  "
             f"{'agrees with the AI labeler':<30}  {'weight':>8}  {'share':>6}"]
    for p in names:
        stats = agree["pools"].get(p, {"rows": 0, "pairs": 0, "with_others": None})
        w = weights[p]
        share = "n/a" if w["share"] is None else f"{100 * w['share']:.1f}%"
        others, with_ai = _rate(stats["with_others"]), _rate(ai["pools"].get(p)) if ai else "no --labels"
        lines.append(f"{p:<{width}}  {stats['rows']:>5}  {stats['pairs']:>5}  {others:<30}  {with_ai:<30}  "
                     f"{w['weight']:>8.2f}  {share:>6}")
    weighting = audit["weighting"]
    how = ", ".join([*(f"{k}={v:g}" for k, v in weighting["pools"].items()),
                     *([f"balance {weighting['balance']}"] if weighting["balance"] else [])]) or "as given"
    lines.append(f"weights: {how}")
    for cell in agree["matrix"]:
        lines.append(f"{cell['a']} vs {cell['b']}: {_rate(cell)} (pairs both labelled)")
    if ai:
        lines.append(f"AI labeler vs all pools: {_rate(ai['overall'])} ({ai['labels']} usable AI label(s))")
    n = agree["n_disagreements"]
    lines.append(f"pairs where pools disagree: {n}" + (f" (first {show})" if n > show else ""))
    for d in agree["disagreements"][:show]:
        picks = "; ".join(f"{p}: {_short(a, 40)}" for p, a in d["picks"].items())
        lines.append(f"  {d['pair']}  {_short(d['prompt'], 50)}  ->  {picks}")
    if agree["ties"]:
        lines.append(f"tied pool votes left out: {agree['ties']}")
    return "\n".join(lines)
