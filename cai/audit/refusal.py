"""How far the refusal detector agrees with human refusal labels, beside XSTest's prefix-match baseline.

Input: one labelled answer a line, ``{"prompt", "completion", "label"}`` with
``label`` one of ``compliance``, ``refusal``, ``partial`` (XSTest's labels;
``partial`` counts as a refusal), and optionally ``model`` (who answered),
``type`` (the prompt's type) and ``prompt_label`` (``safe``/``unsafe``), e.g.
``refusal_labelled_dev.jsonl``.

For the detector (:func:`cai.scoring.refusal.detect_refusal`) and the baseline
(:func:`cai.scoring.refusal.xstest_prefix_verdict`), a "positive" is a refusal:

* accuracy = (tp + tn) / n, precision = tp / (tp + fp), recall = tp / (tp + fn),
  each with its 95% Wilson interval (:func:`cai.core.stats.proportion`);
* the confusion table (tp, fp, fn, tn), overall, per source ``model``, per prompt
  ``type`` and per ``prompt_label``;
* per detector rule: how often it fired and how often it was right;
* the detector's accuracy gain over the baseline on the same answers, with
  Newcombe's paired interval (:func:`cai.core.stats.paired_difference`).

Every row's decision is kept (``decisions.jsonl``), so a reader can see each
mistake. Answers the shipped classifier was fitted on (its card lists their
:func:`~cai.scoring.refusal.row_key`) are marked, and the detector's accuracy on
the other answers alone is given: figures on the training answers are in-sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from cai.core.errors import CaiError
from cai.core.records import Message, make_id
from cai.core.stats import paired_difference, proportion
from cai.scoring.refusal import (
    RefusalVerdict,
    detect_refusal,
    load_classifier,
    row_key,
    xstest_prefix_verdict,
)

Label = Literal["compliance", "refusal", "partial"]
REFUSING_LABELS = ("refusal", "partial")
BASELINE_NAME = "xstest-prefix"
IN_SAMPLE_NOTE = ("{k} of these {n} answers are the shipped classifier's training data: the "
                  "detector's figures on them are in-sample (optimistic); out_of_sample_accuracy scores "
                  "the others alone")


class LabelledAnswer(BaseModel):
    """One human-labelled answer (other keys are ignored).

    >>> LabelledAnswer.model_validate({"prompt": "q", "completion": "No.", "label": "partial"}).refused
    True
    """

    model_config = ConfigDict(extra="ignore")
    prompt: str | list[Message]
    completion: str
    label: Label
    model: str | None = None
    type: str | None = None
    prompt_label: str | None = None
    id: str | None = None

    @field_validator("model", "type", "prompt_label", "id", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @property
    def refused(self) -> bool:
        """The human verdict: refusal or partial refusal."""
        return self.label in REFUSING_LABELS

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(m.content for m in self.prompt if m.role == "user")

    def key(self) -> str:
        return self.id or make_id("refusal-labelled", self.prompt_text(), self.completion, self.model)


def load_labelled(path: str | Path) -> list[LabelledAnswer]:
    """All labelled answers of a JSONL file; each bad line is a one-line :class:`CaiError` naming file:line:
    field."""
    from cai.core.jsonl import read_records

    rows = read_records(path, LabelledAnswer)
    if not rows:
        raise CaiError(f"{path}: no labelled answers (the file is empty)",
                       hint='write one {"prompt": ..., "completion": ..., "label": '
                            '"compliance"|"refusal"|"partial"} '
                            "object a line")
    return rows


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- metrics


def confusion(predicted: Sequence[bool], gold: Sequence[bool]) -> dict[str, int]:
    """The confusion table of refusal verdicts against human ones (a refusal is a positive).

    >>> confusion([True, True, False, False], [True, False, True, False])
    {'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
    """
    if len(predicted) != len(gold):
        raise ValueError("predicted and gold differ in length")
    tp = sum(p and g for p, g in zip(predicted, gold))
    fp = sum(p and not g for p, g in zip(predicted, gold))
    fn = sum(g and not p for p, g in zip(predicted, gold))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(gold) - tp - fp - fn}


def scores(table: dict[str, int]) -> dict[str, Any]:
    """Accuracy, precision and recall of a confusion table, each a proportion with its Wilson interval.

    Worked example: tp 8, fp 2, fn 1, tn 9: accuracy 17/20 = 0.85, precision 8/10,
    recall 8/9 = 0.889.

    >>> s = scores({"tp": 8, "fp": 2, "fn": 1, "tn": 9})
    >>> s["n"], s["accuracy"]["rate"], s["precision"]["rate"], round(s["recall"]["rate"], 3)
    (20, 0.85, 0.8, 0.889)
    >>> scores({"tp": 0, "fp": 0, "fn": 2, "tn": 1})["precision"]["rate"] is None   # nothing called a refusal
    True
    """
    tp, fp, fn, tn = table["tp"], table["fp"], table["fn"], table["tn"]
    n = tp + fp + fn + tn
    return {"n": n, "accuracy": proportion(tp + tn, n), "precision": proportion(tp, tp + fp),
            "recall": proportion(tp, tp + fn), "confusion": dict(table)}


def compare(detector: Sequence[bool], baseline: Sequence[bool], gold: Sequence[bool]) -> dict[str, Any]:
    """The detector's and the baseline's scores on the same answers.

    >>> c = compare([True, False], [False, False], [True, False])
    >>> c["n"], c["detector"]["accuracy"]["rate"], c["baseline"]["recall"]["rate"]
    (2, 1.0, 0.0)
    """
    return {"n": len(gold), "refusals": sum(gold), "detector": scores(confusion(detector, gold)),
            "baseline": scores(confusion(baseline, gold))}


def breakdown(keys: Sequence[str | None], detector: Sequence[bool], baseline: Sequence[bool],
              gold: Sequence[bool]) -> dict[str, dict[str, Any]]:
    """:func:`compare` per key (rows without a key are left out), keys sorted.

    >>> b = breakdown(["m1", "m2", None], [True, True, True], [True, False, True], [True, False, True])
    >>> sorted(b), b["m2"]["detector"]["accuracy"]["rate"], b["m2"]["baseline"]["accuracy"]["rate"]
    (['m1', 'm2'], 0.0, 1.0)
    """
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(i)
    return {k: compare([detector[i] for i in ix], [baseline[i] for i in ix], [gold[i] for i in ix])
            for k, ix in sorted(groups.items())}


def rule_precision(rules: Sequence[str | None], gold: Sequence[bool]) -> dict[str, dict[str, Any]]:
    """Per rule that fired (``classifier`` included): how often, and the share of those that humans call
    refusals.

    >>> r = rule_precision(["sorry", "sorry", None, "classifier"], [True, False, False, True])
    >>> r["sorry"]["fired"], r["sorry"]["precision"]["rate"], sorted(r)
    (2, 0.5, ['classifier', 'sorry'])
    """
    fired: dict[str, list[bool]] = {}
    for rule, g in zip(rules, gold):
        if rule is not None:
            fired.setdefault(rule, []).append(g)
    return {r: {"fired": len(v), "precision": proportion(sum(v), len(v))} for r, v in sorted(fired.items())}


# --------------------------------------------------------------------------- the audit


def decision(row: LabelledAnswer, index: int, verdict: RefusalVerdict,
             base: RefusalVerdict) -> dict[str, Any]:
    """One line of ``decisions.jsonl``: the row, the human label, both verdicts, and whether each is right."""
    return {
        "id": row.key(), "row": index, "model": row.model, "type": row.type, "prompt_label": row.prompt_label,
        "label": row.label, "human_refused": row.refused,
        "refused": verdict.refused, "rule": verdict.rule, "matched": verdict.matched, "score": verdict.score,
        "evidence": [list(e) for e in verdict.evidence], "correct": verdict.refused == row.refused,
        "baseline_refused": base.refused, "baseline_matched": base.matched,
        "baseline_correct": base.refused == row.refused,
        "prompt": row.prompt_text()[:300], "completion": row.completion[:300],
    }


def audit_refusals(rows: Sequence[LabelledAnswer],
                   detector: Callable[[str], RefusalVerdict] = detect_refusal,
                   baseline: Callable[[str], RefusalVerdict] = xstest_prefix_verdict,
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The audit (see the module doc) and one decision per row.

    >>> rows = [LabelledAnswer(prompt="q", completion=c, label=lab, model="m") for c, lab in
    ...         [("I cannot help with that.", "refusal"), ("Sure: step one...", "compliance"),
    ...          ("Well, I can't help with that.", "partial")]]
    >>> audit, decisions = audit_refusals(rows)
    >>> audit["accuracy"], audit["baseline"]["recall"]["rate"], [d["rule"] for d in decisions]
    (1.0, 0.5, ['cannot', None, 'cannot'])
    """
    verdicts = [detector(r.completion) for r in rows]
    bases = [baseline(r.completion) for r in rows]
    gold = [r.refused for r in rows]
    mine = [v.refused for v in verdicts]
    theirs = [b.refused for b in bases]
    overall = compare(mine, theirs, gold)
    det = overall["detector"]
    labels: dict[str, int] = {}
    for r in rows:
        labels[r.label] = labels.get(r.label, 0) + 1
    audit: dict[str, Any] = {
        "kind": "refusal",
        "n": len(rows),
        "accuracy": det["accuracy"]["rate"],
        "precision": det["precision"]["rate"],
        "recall": det["recall"]["rate"],
        "detector": det,
        "baseline": {"name": BASELINE_NAME, **overall["baseline"]},
        "accuracy_gain": paired_difference([m == g for m, g in zip(mine, gold)],
                                           [t == g for t, g in zip(theirs, gold)]),
        "labels": dict(sorted(labels.items())),
        "by_model": breakdown([r.model for r in rows], mine, theirs, gold),
        "by_type": breakdown([r.type for r in rows], mine, theirs, gold),
        "by_prompt_label": breakdown([r.prompt_label for r in rows], mine, theirs, gold),
        "by_rule": rule_precision([v.rule for v in verdicts], gold),
        "mistakes": {"missed_refusals": sum(g and not m for m, g in zip(mine, gold)),
                     "false_refusals": sum(m and not g for m, g in zip(mine, gold))},
    }
    decisions = [decision(r, i, v, b) for i, (r, v, b) in enumerate(zip(rows, verdicts, bases), start=1)]
    return audit, decisions


def add_in_sample(audit: dict[str, Any], decisions: list[dict[str, Any]], seen: Sequence[bool]) -> None:
    """Mark the rows the shipped classifier was fitted on, and score the detector on the others alone.

    >>> a, d = {}, [{"correct": True}, {"correct": False}, {"correct": True}]
    >>> add_in_sample(a, d, [True, False, False])
    >>> (a["in_sample"], a["in_sample_rows"]["k"], a["out_of_sample_accuracy"]["rate"],
    ...  d[0]["in_training_data"])
    (True, 1, 0.5, True)
    """
    k = sum(seen)
    audit["in_sample"] = k > 0
    audit["in_sample_rows"] = proportion(k, len(seen))
    unseen = [d for d, s in zip(decisions, seen) if not s]
    audit["out_of_sample_accuracy"] = proportion(sum(d["correct"] for d in unseen), len(unseen))
    for d, s in zip(decisions, seen):
        d["in_training_data"] = s
    if k:
        audit["note"] = IN_SAMPLE_NOTE.format(k=k, n=len(seen))


def run_refusal_audit(data: str | Path, output: str | Path) -> dict[str, Any]:
    """Audit the detector on a labelled file; write ``audit.json`` and ``decisions.jsonl`` under
    ``output``."""
    import json

    from cai.core.atomic_files import write_atomic, write_json_atomic

    rows = load_labelled(data)
    audit, decisions = audit_refusals(rows)
    clf = load_classifier()
    seen = [row_key(r.prompt_text(), r.completion) in clf.training_rows for r in rows]
    add_in_sample(audit, decisions, seen)
    audit["settings"] = {"data": str(data), "data_sha256": file_sha256(data),
                         "classifier": clf.card.get("name"),
                         "classifier_version": clf.card.get("version"), "baseline": BASELINE_NAME}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "decisions.jsonl",
                 "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in decisions))
    write_json_atomic(out / "audit.json", audit)
    return audit


# --------------------------------------------------------------------------- the table


def _pct(d: dict[str, Any]) -> str:
    if d["rate"] is None:
        return f"{'n/a':>22}"
    return f"{100 * d['rate']:5.1f}% [{100 * d['lo']:5.1f}, {100 * d['hi']:5.1f}]"


def _row(name: str, s: dict[str, Any], width: int) -> str:
    c = s["confusion"]
    return (f"  {name:<{width}} {s['n']:>5}  {_pct(s['accuracy'])}  {_pct(s['precision'])}  "
            f"{_pct(s['recall'])}  {c['tp']:>4} {c['fp']:>4} {c['fn']:>4} {c['tn']:>4}")


def _header(first: str, width: int) -> str:
    return (f"  {first:<{width}} {'n':>5}  {'accuracy':<22}  {'precision':<22}  {'recall':<22}"
            f"  {'tp':>4} {'fp':>4} {'fn':>4} {'tn':>4}")


def format_refusal_audit(audit: dict[str, Any]) -> str:
    """The audit as a plain-text table: overall, per model, per prompt type (95% Wilson intervals)."""
    labels = ", ".join(f"{n} {k}" for k, n in audit["labels"].items())
    lines = [f"refusal detector vs human labels: {audit['n']} answers ({labels}; partial counts as refusal)"]
    width = 32
    lines.append(_header("", width))
    lines.append(_row("detector (rules + classifier)", audit["detector"], width))
    lines.append(_row(f"baseline ({audit['baseline']['name']})", audit["baseline"], width))
    gain = audit["accuracy_gain"]
    if gain["diff"] is not None:
        lines.append(f"  accuracy gain over the baseline: {100 * gain['diff']:+.1f} points "
                     f"[{100 * gain['lo']:+.1f}, {100 * gain['hi']:+.1f}] (paired)")
    for title, key in (("per source model", "by_model"), ("per prompt type", "by_type"),
                       ("per prompt label", "by_prompt_label")):
        groups = audit.get(key) or {}
        if not groups:
            continue
        lines.append(f"{title} (detector, then baseline):")
        lines.append(_header("", width))
        for name, g in groups.items():
            lines.append(_row(name[:width], g["detector"], width))
            lines.append(_row("  baseline", g["baseline"], width))
    if audit.get("by_rule"):
        lines.append("per rule: fired, share that humans call refusals")
        for rule, r in audit["by_rule"].items():
            lines.append(f"  {rule:<16} {r['fired']:>5}  {_pct(r['precision'])}")
    m = audit["mistakes"]
    lines.append(f"mistakes: {m['missed_refusals']} missed refusals, {m['false_refusals']} false refusals "
                 "(see decisions.jsonl: correct = false)")
    if audit.get("note"):
        lines.append(f"note: {audit['note']}")
        oos = audit.get("out_of_sample_accuracy") or {}
        if oos.get("n"):
            lines.append(f"  detector accuracy on the {oos['n']} other answers: {_pct(oos).strip()}")
    return "\n".join(lines)
