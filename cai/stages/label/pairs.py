"""Answer pairs for the labeller: from sampled candidates, from a preference file, or from a responses file.

A :class:`Pair` is two different answers to one prompt, in a given order; its id
is a hash of the prompt and both answers. Pairs come from sampled candidates
(:func:`pairs_from_completions`: all pairs ``i < j`` of a prompt's distinct
answers, or disjoint pairs ``(0,1), (2,3)...``), from a preference file
(:func:`pairs_from_preferences`: ``chosen`` is shown first, as ``answer_a``), or
from a responses file in either shape (:func:`read_pairs_file`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike, read_records
from cai.core.records import Message, PreferenceRecord, make_id, to_chat

Pairing = Literal["all", "disjoint"]


@dataclass(frozen=True)
class Pair:
    """Two different answers to one prompt, in a given order (``answer_a`` first)."""

    id: str
    prompt: list[Message]
    answer_a: str
    answer_b: str
    metadata: dict[str, Any] = field(default_factory=dict)


def make_pair(prompt: Sequence[Message], answer_a: str, answer_b: str, metadata: dict | None = None) -> Pair:
    """A pair with its deterministic id (prompt and both answers, in order).

    >>> p = make_pair([Message(role="user", content="q")], "x", "y")
    >>> p.id == make_pair([Message(role="user", content="q")], "x", "y").id, len(p.id)
    (True, 16)
    """
    if answer_a == answer_b:
        raise ValueError("a pair needs two different answers")
    pid = make_id("pair", to_chat(list(prompt)), answer_a, answer_b)
    return Pair(pid, list(prompt), answer_a, answer_b, dict(metadata or {}))


def pair_indices(k: int, pairing: Pairing = "all") -> list[tuple[int, int]]:
    """Which candidates are paired: ``all`` pairs ``i < j``, or ``disjoint`` ``(0,1), (2,3)...``.

    >>> pair_indices(3), pair_indices(4, "disjoint"), pair_indices(1)
    ([(0, 1), (0, 2), (1, 2)], [(0, 1), (2, 3)], [])
    """
    if pairing == "disjoint":
        return [(i, i + 1) for i in range(0, k - 1, 2)]
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def distinct_answers(answers: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each answer (whitespace-trimmed), in order.

    >>> distinct_answers(["a", "b", " a ", "c"])
    [0, 1, 3]
    """
    seen: set[str] = set()
    keep = []
    for i, a in enumerate(answers):
        if a.strip() not in seen:
            seen.add(a.strip())
            keep.append(i)
    return keep


@dataclass
class PairingReport:
    """How candidates became pairs."""

    prompts: int = 0
    answers: int = 0
    duplicate_answers: int = 0
    prompts_without_pair: int = 0
    pairs: int = 0


def pairs_from_completions(records: Iterable[Any],
                           pairing: Pairing = "all") -> tuple[list[Pair], PairingReport]:
    """Pairs from answer records (``prompt`` + one-message ``completion``), grouped by prompt.

    Records of one prompt are ordered by ``sample_index`` when they have one (else
    file order); identical answers are dropped; a prompt with fewer than two
    distinct answers gives no pair (counted in the report).
    """
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(make_id(to_chat(r.prompt)), []).append(r)
    report = PairingReport(prompts=len(groups))
    pairs: list[Pair] = []
    for recs in groups.values():
        recs = sorted(recs, key=lambda r: getattr(r, "sample_index", 0))
        texts = [r.completion[0].content for r in recs]
        keep = distinct_answers(texts)
        report.answers += len(texts)
        report.duplicate_answers += len(texts) - len(keep)
        idx = pair_indices(len(keep), pairing)
        if not idx:
            report.prompts_without_pair += 1
        for i, j in idx:
            ri, rj = recs[keep[i]], recs[keep[j]]
            meta = {"answer_ids": [ri.id, rj.id]}
            if getattr(ri, "prompt_id", None):
                meta["prompt_id"] = ri.prompt_id
            pairs.append(make_pair(ri.prompt, texts[keep[i]], texts[keep[j]], meta))
    report.pairs = len(pairs)
    return pairs, report


def pairs_from_candidates(path: PathLike, records: Sequence[Any] | None = None,
                          ids: Collection[str] | None = None, pairing: Pairing = "all"
                          ) -> tuple[list[Pair], PairingReport]:
    """Pairs from a candidates file (completion records): only ``ids`` when given, prompts in ``records``
    order."""
    from cai.core.records import CompletionRecord

    cands = [c for c in read_records(path, CompletionRecord) if ids is None or c.id in ids]
    if records is not None:
        order = {r.key(): n for n, r in enumerate(records)}
        cands.sort(key=lambda c: (order.get(c.prompt_id, 0), c.sample_index))
    return pairs_from_completions(cands, pairing)


def pairs_from_preferences(records: Iterable[PreferenceRecord]) -> list[Pair]:
    """Pairs from preference records: ``chosen`` becomes ``answer_a`` (shown first in order ``ab``)."""
    out = []
    for r in records:
        meta = {"source_id": r.id, "source": r.source}
        out.append(make_pair(r.prompt, r.chosen[-1].content, r.rejected[-1].content, meta))
    return out


def read_pairs_file(path: PathLike, pairing: Pairing = "all") -> tuple[list[Pair], PairingReport]:
    """Pairs from a responses file, by the shape of its first record.

    * pair shape, ``{"prompt", "chosen", "rejected", ...}`` (PreferenceRecord,
      e.g. a human pair file): each line is a pair, ``chosen`` shown first;
    * answer shape, ``{"prompt", "completion", "id"?, ...}`` (a
      CompletionRecord, or any prompt/completion JSONL): answers are grouped by
      prompt and paired like sampled candidates.
    """
    import json

    from cai.sources.columns import rename
    from cai.sources.load import first_row
    from cai.sources.spec import parse_source
    from cai.stages.export import SFTRow

    src = parse_source(path)  # any source (cai.sources); a plain .jsonl file is read as before
    p = Path(src.location)
    first: dict[str, Any] | None = None
    if src.kind != "jsonl":
        first = first_row(src.text)
    else:
        if not p.is_file():
            raise CaiError(f"{p}: no such file", hint="give a JSONL file of pairs or answers")
        with p.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        first = json.loads(line)
                    except ValueError:
                        first = None
                    if not isinstance(first, dict):
                        raise CaiError(f"{p}:{n}: expected a JSON object",
                                       hint="write one {...} object a line")
                    first = rename(first, src.columns)
                    break
    if first is None:
        raise CaiError(f"{p}: no records", hint="write one pair or answer a line")
    if "chosen" in first or "rejected" in first or "response_0" in first:
        pairs = pairs_from_preferences(read_records(src.text, PreferenceRecord))
        return pairs, PairingReport(prompts=len({make_id(to_chat(x.prompt)) for x in pairs}),
                                    answers=2 * len(pairs), pairs=len(pairs))
    if "completion" in first:
        return pairs_from_completions(read_records(src.text, SFTRow), pairing)
    raise CaiError(
        f"{p}:1: neither a pair (prompt/chosen/rejected) nor an answer (prompt/completion)",
        hint="see `cai label --help` for the two --responses formats",
    )

def load_pairs_for_audit(path: Path, limit: int | None) -> list[Pair]:
    """Human pairs for the audit: ``answer_a`` is the human-chosen answer."""
    pairs = pairs_from_preferences(read_records(path, PreferenceRecord))
    if not pairs:
        raise CaiError(f"{path}: no pairs", hint="write one {prompt, chosen, rejected} object a line")
    return pairs[: limit or None]
