"""Annotator pools: per-pool weights of human preference rows, and how far the pools agree.

A human preference row may carry ``pool`` (its annotator group: a region, a vendor...);
rows without one are in the pool ``unpooled`` (:data:`NO_POOL`). Two things are done
with pools:

**Weighting** (:func:`pool_weights`). With ``w[P]`` the weight given to pool ``P``
(1 when no weights are given), ``r.weight`` a row's own weight, ``S[P]`` the sum of
``r.weight`` over pool ``P``, ``T`` the sum over all rows and ``K`` the number of pools:

* no balance: ``new = r.weight * w[P]``;
* ``balance: equal``: ``new = r.weight * w[P] * (T / K) / S[P]``: every pool's rows sum to
  ``w[P] * T / K``, whatever the pool's size, so with all ``w[P] = 1`` the pools weigh the
  same and the mean weight stays what it was (1 for plain rows).

Worked example: pool A has 3 rows, pool B 1 row (all weight 1), so T = 4, K = 2.
``balance: equal`` gives A's rows 1 * 1 * 2 / 3 = 0.667 each (total 2) and B's row
1 * 1 * 2 / 1 = 2 (total 2): mean weight (3 * 0.667 + 2) / 4 = 1. Weights ``{A: 1, B: 0.5}``
alone give A's rows 1 and B's row 0.5; with ``balance: equal`` too, A totals 2 and B 1.

**Agreement** (:func:`pool_agreement`, :func:`ai_agreement`). A pair is the same pair
whatever its order: :func:`pair_key` hashes the prompt and the two answers sorted. A
pool's vote on a pair is the mean over its rows of p(first sorted answer is better)
(``p_chosen`` or ``1 - p_chosen``); above 0.5 it picks the first answer, below the
second, exactly 0.5 is a tie and picks nothing. Two pools agree on a pair when they
pick the same answer; agreement rates carry Wilson 95% intervals
(:func:`cai.core.stats.proportion`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.core.errors import CaiError
from cai.core.records import LabelRecord, Message, PreferenceRecord, make_id, to_chat
from cai.core.stats import proportion

NO_POOL = "unpooled"
"""The pool of a row without ``pool``."""

Balance = Literal["equal"]


class PoolWeighting(BaseModel):
    """How human rows are weighted by pool: ``pools`` (a weight >= 0 per pool) and/or ``balance: equal``.

    >>> PoolWeighting.model_validate({"pools": {"eu": 1.0, "us": 0.5}}).pools["us"]
    0.5
    >>> PoolWeighting(balance="equal").active, PoolWeighting().active
    (True, False)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    pools: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    balance: Balance | None = None

    @property
    def active(self) -> bool:
        return bool(self.pools) or self.balance is not None


def pool_of(record: PreferenceRecord) -> str:
    """A row's pool name (:data:`NO_POOL` when it has none)."""
    return record.pool or NO_POOL


def parse_pool_weights(items: Sequence[str]) -> dict[str, float]:
    """``--pool-weight NAME=WEIGHT`` options as a mapping (one-line errors).

    >>> parse_pool_weights(["eu=1", "us=0.5"])
    {'eu': 1.0, 'us': 0.5}
    >>> try:
    ...     parse_pool_weights(["eu"])
    ... except CaiError as e:
    ...     print(e.message)
    --pool-weight 'eu' is not NAME=WEIGHT
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weight = float(value) if sep and name.strip() else None
        except ValueError:
            weight = None
        if weight is None or weight < 0:
            raise CaiError(f"--pool-weight {item!r} is not NAME=WEIGHT", hint="e.g. --pool-weight eu=1.0 "
                           "(a weight >= 0; repeat the option for each pool)")
        out[name.strip()] = weight
    return out


def pool_weights(records: Sequence[PreferenceRecord], weights: Mapping[str, float] | None = None,
                 balance: Balance | None = None) -> tuple[list[float], dict[str, dict[str, Any]]]:
    """Each row's weight after pool weighting (formula in the module doc), and what each pool got.

    The second value maps each pool (in order of first appearance) to ``rows``, ``weight``
    (its rows' total), ``share`` (of all rows' total) and ``mean_weight``. A pool in the rows
    that ``weights`` does not name is an error (a misspelt pool would otherwise count as 1);
    a named pool with no rows is reported with 0 rows.

    Worked example (module doc): A 3 rows, B 1 row, ``balance="equal"``.

    >>> rows = [PreferenceRecord.model_validate({"prompt": f"q{i}", "chosen": "a", "rejected": "b",
    ...         "pool": p}) for i, p in enumerate("AAAB")]
    >>> w, eff = pool_weights(rows, balance="equal")
    >>> [round(x, 4) for x in w], eff["A"]["weight"], eff["B"]["weight"], eff["B"]["share"]
    ([0.6667, 0.6667, 0.6667, 2.0], 2.0, 2.0, 0.5)
    >>> pool_weights(rows, {"A": 1.0, "B": 0.5})[0]
    [1.0, 1.0, 1.0, 0.5]
    >>> w, eff = pool_weights(rows, {"A": 1.0, "B": 0.5}, "equal")
    >>> eff["A"]["weight"], eff["B"]["weight"], round(eff["A"]["share"], 4)
    (2.0, 1.0, 0.6667)
    >>> try:
    ...     pool_weights(rows, {"A": 1.0})
    ... except CaiError as e:
    ...     print(e.message)
    human rows of pool 'B' have no pool weight (weights given for: A)
    """
    names = list(dict.fromkeys(pool_of(r) for r in records))
    if weights:
        missing = [p for p in names if p not in weights]
        if missing:
            raise CaiError(f"human rows of pool {missing[0]!r} have no pool weight (weights given for: "
                           f"{', '.join(weights)})", hint=f"add a weight for {missing[0]!r}, or drop the "
                           "per-pool weights (rows without a pool are in pool 'unpooled')")
    w = {p: float((weights or {}).get(p, 1.0)) for p in names}
    own = {p: sum(r.weight for r in records if pool_of(r) == p) for p in names}  # S[P]
    total = sum(own.values())  # T
    if balance == "equal":
        scale = {p: w[p] * total / len(names) / own[p] if own[p] else 0.0 for p in names}
    elif balance is None:
        scale = w
    else:
        raise CaiError(f"pool balance {balance!r} is not known", hint="use balance: equal, or leave it out")
    new = [r.weight * scale[pool_of(r)] for r in records]
    grand = sum(new)
    effective: dict[str, dict[str, Any]] = {}
    for p in [*names, *(q for q in (weights or {}) if q not in names)]:
        mine = [x for x, r in zip(new, records) if pool_of(r) == p]
        effective[p] = {"rows": len(mine), "weight": sum(mine), "share": sum(mine) / grand if grand else None,
                        "mean_weight": sum(mine) / len(mine) if mine else None}
    return new, effective


def apply_pool_weights(records: Sequence[PreferenceRecord], weighting: PoolWeighting | None
                       ) -> tuple[list[PreferenceRecord], dict[str, dict[str, Any]]]:
    """The rows with their pool-weighted ``weight``, and each pool's effective weight (:func:`pool_weights`).

    >>> r = PreferenceRecord.model_validate({"prompt": "q", "chosen": "a", "rejected": "b", "pool": "eu"})
    >>> [x.weight for x in apply_pool_weights([r, r], PoolWeighting(pools={"eu": 0.25}))[0]]
    [0.25, 0.25]
    """
    weighting = weighting or PoolWeighting()
    new, effective = pool_weights(records, weighting.pools, weighting.balance)
    return [r.model_copy(update={"weight": x}) for r, x in zip(records, new)], effective


def effective_weights(records: Sequence[PreferenceRecord]) -> dict[str, dict[str, Any]]:
    """What each pool got of already weighted rows (the ``pools`` section of the label stats)."""
    return pool_weights(records)[1]


# ----------------------------------------------------------------------------- agreement


def _text(messages: Sequence[Message]) -> str:
    return messages[-1].content


def pair_key(prompt: Sequence[Message], answer_1: str, answer_2: str) -> str:
    """The id of a pair whatever its order: a hash of the prompt and the two answers sorted.

    >>> p = [Message(role="user", content="q")]
    >>> pair_key(p, "a", "b") == pair_key(p, "b", "a"), pair_key(p, "a", "b") == pair_key(p, "a", "c")
    (True, False)
    """
    return make_id("pool-pair", to_chat(list(prompt)), sorted([answer_1, answer_2]))


def pool_votes(records: Iterable[PreferenceRecord]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """``{pair key: {pool: p(first sorted answer is better)}}`` (a pool's rows on a pair averaged), and
    each pair's ``{"prompt", "answers": [first, second]}``.

    >>> mk = lambda c, r, p: PreferenceRecord.model_validate({"prompt": "q", "chosen": c, "rejected": r,
    ...                                                       "pool": p})
    >>> votes, info = pool_votes([mk("a", "b", "A"), mk("b", "a", "B"), mk("a", "b", "B")])
    >>> list(votes.values())[0], list(info.values())[0]["answers"]
    ({'A': 1.0, 'B': 0.5}, ['a', 'b'])
    """
    sums: dict[str, dict[str, list[float]]] = {}
    info: dict[str, Any] = {}
    for r in records:
        chosen, rejected = _text(r.chosen), _text(r.rejected)
        key = pair_key(r.prompt, chosen, rejected)
        first = min(chosen, rejected)
        info.setdefault(key, {"prompt": _text(r.prompt), "answers": [first, max(chosen, rejected)]})
        sums.setdefault(key, {}).setdefault(pool_of(r), []).append(
            r.p_chosen if chosen == first else 1.0 - r.p_chosen)
    return {k: {p: sum(v) / len(v) for p, v in by.items()} for k, by in sums.items()}, info


def pick(p_first: float | None) -> int | None:
    """0 (the first sorted answer), 1 (the second) or None (a tie, or no vote).

    >>> pick(0.9), pick(0.2), pick(0.5), pick(None)
    (0, 1, None, None)
    """
    if p_first is None or p_first == 0.5:
        return None
    return 0 if p_first > 0.5 else 1


def pool_agreement(records: Sequence[PreferenceRecord], show: int | None = None) -> dict[str, Any]:
    """How far the pools agree on the pairs they both labelled, and the pairs where they do not.

    Returns ``pools`` (per pool: ``rows``, ``pairs`` it voted on, and ``with_others``, the
    Wilson proportion of agreeing (pair, other pool) comparisons), ``matrix`` (one row per two
    pools: their proportion over the pairs both decided), ``disagreements`` (pairs two decided
    pools picked differently: prompt, answers, each pool's pick as answer text, first ``show``
    of them) with ``n_disagreements``, and ``ties`` (pool votes of exactly 0.5, left out).

    Worked example: A and B label the same 4 pairs and B flips one: agreement 3/4.

    >>> mk = lambda q, c, r, p: PreferenceRecord.model_validate({"prompt": q, "chosen": c,
    ...                                                          "rejected": r, "pool": p})
    >>> rows = [mk(f"q{i}", "good", "bad", "A") for i in range(4)]
    >>> rows += [mk(f"q{i}", "good", "bad", "B") for i in range(3)] + [mk("q3", "bad", "good", "B")]
    >>> a = pool_agreement(rows)
    >>> a["matrix"][0]["rate"], a["n_disagreements"], a["disagreements"][0]["picks"]
    (0.75, 1, {'A': 'good', 'B': 'bad'})
    """
    votes, info = pool_votes(records)
    names = list(dict.fromkeys(pool_of(r) for r in records))
    rows = {p: sum(1 for r in records if pool_of(r) == p) for p in names}
    ties = sum(1 for by in votes.values() for v in by.values() if pick(v) is None)
    with_others = {p: [0, 0] for p in names}
    pairwise = {(a, b): [0, 0] for a, b in combinations(names, 2)}
    disagreements = []
    for key, by in votes.items():
        picks = {p: pick(v) for p, v in by.items() if pick(v) is not None}
        for a, b in combinations([p for p in names if p in picks], 2):
            same = picks[a] == picks[b]
            for cell in (pairwise[(a, b)], with_others[a], with_others[b]):
                cell[0] += same
                cell[1] += 1
        if len(set(picks.values())) > 1:
            answers = info[key]["answers"]
            disagreements.append({"pair": key, "prompt": info[key]["prompt"], "answers": answers,
                                  "picks": {p: answers[c] for p, c in picks.items()}})
    return {
        "pools": {p: {"rows": rows[p], "pairs": sum(1 for by in votes.values() if p in by),
                      "with_others": proportion(*with_others[p])} for p in names},
        "matrix": [{"a": a, "b": b, **proportion(*kn)} for (a, b), kn in pairwise.items()],
        "n_disagreements": len(disagreements),
        "disagreements": disagreements if show is None else disagreements[:show],
        "ties": ties,
    }


def ai_agreement(records: Sequence[PreferenceRecord], labels: Iterable[LabelRecord]) -> dict[str, Any]:
    """Per pool, how often the AI labeler picks what the pool picked, on the pairs both decided.

    ``labels`` are AI labels of the same pairs in either order (``labels.jsonl`` of ``cai audit
    labeler --data HUMANFILE``); a label's pick is ``answer_a`` when ``p_a > 0.5``. Failed labels
    and ties (``p_a == 0.5``) pick nothing. Per pool: the Wilson proportion over its decided pairs,
    plus ``unlabelled`` (its pairs no usable label covers) and ``overall`` across pools.

    >>> from cai.core.records import Provenance
    >>> m = lambda t: [Message(role="assistant", content=t)]
    >>> lab = LabelRecord(id="l", pair_id="p", prompt=[Message(role="user", content="q")], answer_a=m("bad"),
    ...     answer_b=m("good"), status="ok", p_a=0.2, principle_ids=[], judgements=[],
    ...     provenance=Provenance())
    >>> mk = lambda c, r, p: PreferenceRecord.model_validate({"prompt": "q", "chosen": c, "rejected": r,
    ...                                                       "pool": p})
    >>> a = ai_agreement([mk("good", "bad", "A"), mk("bad", "good", "B")], [lab])
    >>> a["pools"]["A"]["rate"], a["pools"]["B"]["rate"], a["overall"]["n"]
    (1.0, 0.0, 2)
    """
    ai: dict[str, float] = {}
    for lab in labels:
        if lab.status != "ok" or lab.p_a is None:
            continue
        a, b = _text(lab.answer_a), _text(lab.answer_b)
        ai[pair_key(lab.prompt, a, b)] = lab.p_a if a == min(a, b) else 1.0 - lab.p_a
    votes, _ = pool_votes(records)
    names = list(dict.fromkeys(pool_of(r) for r in records))
    counts = {p: [0, 0, 0] for p in names}  # agree, decided, unlabelled
    for key, by in votes.items():
        for p, v in by.items():
            mine, theirs = pick(v), pick(ai.get(key))
            if key not in ai:
                counts[p][2] += 1
            elif mine is not None and theirs is not None:
                counts[p][0] += mine == theirs
                counts[p][1] += 1
    k, n = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    return {"pools": {p: {**proportion(c[0], c[1]), "unlabelled": c[2]} for p, c in counts.items()},
            "overall": proportion(k, n), "labels": len(ai)}
