"""Annotator pools: worked examples of the weighting, a planted disagreement, the recipe form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from cai.core.records import LabelRecord, Message, PreferenceRecord, Provenance
from cai.core.stats import wilson_interval
from cai.stages.label.outputs import Filters, build_outputs
from cai.stages.label.pools import (
    NO_POOL,
    PoolWeighting,
    ai_agreement,
    apply_pool_weights,
    pair_key,
    pool_agreement,
    pool_weights,
)
from cai.stages.label.stage import read_humans


def row(q: str, chosen: str, rejected: str, pool: str | None, weight: float = 1.0) -> PreferenceRecord:
    return PreferenceRecord.model_validate({"prompt": q, "chosen": chosen, "rejected": rejected,
                                            "pool": pool, "weight": weight})


def label(q: str, a: str, b: str, p_a: float | None, status: str = "ok") -> LabelRecord:
    m = lambda t: [Message(role="assistant", content=t)]  # noqa: E731
    return LabelRecord(id=f"l-{q}-{a}", pair_id="p", prompt=[Message(role="user", content=q)], answer_a=m(a),
                       answer_b=m(b), status=status, p_a=p_a, principle_ids=[], judgements=[],
                       provenance=Provenance())


# ----------------------------------------------------------------------------- weights


def test_balance_equal_gives_every_pool_the_same_total_and_keeps_the_mean_at_one():
    # A: 3 rows, B: 1 row -> T = 4, K = 2: each pool totals T/K = 2; A rows 2/3, B row 2
    rows = [row(f"q{i}", "a", "b", p) for i, p in enumerate("AAAB")]
    w, eff = pool_weights(rows, balance="equal")
    assert w == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    assert sum(w) / len(w) == pytest.approx(1.0)
    assert eff["A"] == pytest.approx({"rows": 3, "weight": 2.0, "share": 0.5, "mean_weight": 2 / 3})
    assert eff["B"] == pytest.approx({"rows": 1, "weight": 2.0, "share": 0.5, "mean_weight": 2.0})


def test_per_pool_weights_multiply_rows_and_with_balance_set_the_pool_totals():
    rows = [row(f"q{i}", "a", "b", p) for i, p in enumerate("AAAB")]
    assert pool_weights(rows, {"A": 1.0, "B": 0.5})[0] == [1.0, 1.0, 1.0, 0.5]
    # balance + weights: pool total = w[P] * T / K = A 1 * 2, B 0.5 * 2; A rows 2/3, B row 1
    w, eff = pool_weights(rows, {"A": 1.0, "B": 0.5}, "equal")
    assert w == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1.0])
    assert (eff["A"]["weight"], eff["B"]["weight"]) == pytest.approx((2.0, 1.0))
    assert eff["A"]["share"] == pytest.approx(2 / 3)


def test_row_weights_count_in_the_balance_and_unpooled_rows_are_a_pool():
    # own weights: A rows 2 + 1 (S = 3), unpooled row 1 (S = 1); T = 4, K = 2 -> each pool totals 2
    rows = [row("q0", "a", "b", "A", 2.0), row("q1", "a", "b", "A", 1.0), row("q2", "a", "b", None)]
    w, eff = pool_weights(rows, balance="equal")
    assert w == pytest.approx([4 / 3, 2 / 3, 2.0])
    assert list(eff) == ["A", NO_POOL] and eff[NO_POOL]["rows"] == 1


def test_a_pool_without_weight_is_an_error_and_a_named_pool_without_rows_is_reported():
    rows = [row("q0", "a", "b", "eu"), row("q1", "a", "b", "us")]
    with pytest.raises(CaiError, match="pool 'us' have no pool weight"):
        pool_weights(rows, {"eu": 1.0})
    _, eff = pool_weights(rows, {"eu": 1.0, "us": 1.0, "apac": 2.0})
    assert eff["apac"] == {"rows": 0, "weight": 0, "share": 0.0, "mean_weight": None}


def test_pool_is_part_of_a_human_id_only_when_given():
    plain = PreferenceRecord.model_validate({"prompt": "q", "chosen": "a", "rejected": "b"})
    eu, us = row("q", "a", "b", "eu"), row("q", "a", "b", "us")
    assert plain.pool is None and len({plain.id, eu.id, us.id}) == 3
    assert plain.id == row("q", "a", "b", None).id
    with pytest.raises(ValueError, match="pool"):
        row("q", "a", "b", "")


# ----------------------------------------------------------------------------- agreement


def planted() -> tuple[list[PreferenceRecord], set[str]]:
    """Pools A and B label the same 20 pairs; B flips pairs 0, 2, 4, ..., 14 (8 of them)."""
    rows, flipped = [], set()
    for i in range(20):
        rows.append(row(f"prompt {i}", f"good {i}", f"bad {i}", "A"))
        if i % 2 == 0 and i < 16:
            rows.append(row(f"prompt {i}", f"bad {i}", f"good {i}", "B"))
            flipped.add(f"prompt {i}")
        else:
            rows.append(row(f"prompt {i}", f"good {i}", f"bad {i}", "B"))
    return rows, flipped


def test_a_planted_disagreement_is_found():
    rows, flipped = planted()
    a = pool_agreement(rows)
    (cell,) = a["matrix"]
    assert (cell["a"], cell["b"], cell["k"], cell["n"], cell["rate"]) == ("A", "B", 12, 20, 0.6)
    assert (cell["lo"], cell["hi"]) == pytest.approx(wilson_interval(12, 20))
    assert a["n_disagreements"] == 8 and {d["prompt"] for d in a["disagreements"]} == flipped
    d = next(d for d in a["disagreements"] if d["prompt"] == "prompt 4")
    assert d["picks"] == {"A": "good 4", "B": "bad 4"}
    assert a["pools"]["A"]["with_others"]["rate"] == 0.6 and a["pools"]["B"]["pairs"] == 20
    assert len(pool_agreement(rows, show=3)["disagreements"]) == 3


def test_a_third_pool_on_a_subset_and_ties_are_counted_apart():
    rows, _ = planted()
    rows += [row(f"prompt {i}", f"good {i}", f"bad {i}", "C") for i in range(4)]  # agrees with A on 0..3
    rows.append(row("prompt 19", "good 19", "bad 19", "C").model_copy(update={"p_chosen": 0.5}))
    a = pool_agreement(rows)
    cells = {(c["a"], c["b"]): c for c in a["matrix"]}
    assert (cells[("A", "C")]["k"], cells[("A", "C")]["n"]) == (4, 4)
    assert (cells[("B", "C")]["k"], cells[("B", "C")]["n"]) == (2, 4)  # B flipped 0 and 2
    # C against the others: 4 of 4 with A + 2 of 4 with B
    assert (a["pools"]["C"]["with_others"]["k"], a["pools"]["C"]["with_others"]["n"]) == (6, 8)
    assert a["ties"] == 1 and a["pools"]["C"]["pairs"] == 5


def test_ai_agreement_joins_labels_in_either_order():
    rows, _ = planted()
    labels = [label(f"prompt {i}", f"good {i}", f"bad {i}", 0.9) for i in range(0, 10)]
    labels += [label(f"prompt {i}", f"bad {i}", f"good {i}", 0.2) for i in range(10, 18)]  # order swapped
    labels.append(label("prompt 18", "good 18", "bad 18", None, status="failed"))
    a = ai_agreement(rows, labels)
    # the AI picks "good" on 18 pairs: A agrees on all 18; B flipped 8 of them (all below 16)
    assert (a["pools"]["A"]["k"], a["pools"]["A"]["n"], a["pools"]["A"]["unlabelled"]) == (18, 18, 2)
    assert (a["pools"]["B"]["k"], a["pools"]["B"]["n"]) == (10, 18)
    assert (a["overall"]["k"], a["overall"]["n"], a["labels"]) == (28, 36, 18)
    assert pair_key(labels[10].prompt, "bad 10", "good 10") == pair_key(rows[20].prompt, "good 10", "bad 10")


# ----------------------------------------------------------------------------- the stage and the recipe


def write_rows(path: Path, rows: list[PreferenceRecord]) -> Path:
    path.write_text("".join(r.model_dump_json(exclude={"id"}) + "\n" for r in rows))
    return path


def test_balance_equal_reaches_preferences_weights_and_stats(tmp_path):
    eu = write_rows(tmp_path / "eu.jsonl", [row(f"q{i}", "a", "b", "eu") for i in range(3)])
    us = write_rows(tmp_path / "us.jsonl", [row("q9", "a", "b", "us")])
    plain = read_humans([eu, us], 1.0)
    assert [h.weight for h in plain] == [1.0] * 4
    weighting = PoolWeighting(balance="equal")
    humans = read_humans([eu, us], 0.5, weighting)  # human_weight 0.5 times the balance
    stats = build_outputs(tmp_path / "run", [], Filters(), humans, pools=weighting)
    prefs = [json.loads(x) for x in (tmp_path / "run" / "preferences.jsonl").read_text().splitlines()]
    assert [p["weight"] for p in prefs] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert [p["pool"] for p in prefs] == ["eu", "eu", "eu", "us"]
    saved = json.loads((tmp_path / "run" / "stats.json").read_text())["pools"]
    assert saved == stats["pools"] and saved["balance"] == "equal"
    assert saved["effective"]["eu"]["weight"] == pytest.approx(1.0)
    assert saved["effective"]["us"]["share"] == 0.5


def test_recipe_human_mapping_sets_the_weighting_and_the_label_fingerprint(tmp_path):
    from cai.run.data_stages import label_stage
    from cai.run.load import load_recipe

    write_rows(tmp_path / "h.jsonl", [row("q0", "a", "b", "eu"), row("q1", "a", "b", "us")])
    base = "name: t\nprompts: {redteam: a.jsonl}\n"
    (tmp_path / "plain.yaml").write_text(base + "label: {human: h.jsonl}\n")
    (tmp_path / "eq.yaml").write_text(base + "label:\n  human: {files: [h.jsonl], balance: equal}\n")
    (tmp_path / "w.yaml").write_text(base + "label:\n  human: {files: h.jsonl, pools: {eu: 1, us: 0.5}}\n")
    plain, eq, w = (load_recipe(tmp_path / f"{n}.yaml")[0].recipe for n in ("plain", "eq", "w"))
    assert plain.label.human_pools is None and eq.label.human == [tmp_path / "h.jsonl"]
    assert eq.label.human_pools == PoolWeighting(balance="equal")
    assert w.label.human_pools.pools == {"eu": 1.0, "us": 0.5}
    prints = [json.dumps(label_stage(r).fingerprint(None), sort_keys=True) for r in (plain, eq, w)]
    assert len(set(prints)) == 3 and "human_pools" not in prints[0]
    humans = read_humans(w.label.human, w.label.human_weight, w.label.human_pools)
    assert [h.weight for h in humans] == [1.0, 0.5]
    assert apply_pool_weights(humans, None)[1]["us"]["weight"] == 0.5


@pytest.mark.parametrize("label, needle", [
    ("{human: {files: [h.jsonl], balanse: equal}}", "unknown key 'balanse'"),
    ("{human: {files: [h.jsonl], balance: half}}", "balance"),
    ("{human: {files: [h.jsonl], pools: {eu: -1}}}", "eu"),
])
def test_bad_human_mapping_is_a_one_line_error(tmp_path, label, needle):
    from cai.run.load import load_recipe

    (tmp_path / "r.yaml").write_text(f"name: t\nprompts: {{redteam: a.jsonl}}\nlabel: {label}\n")
    with pytest.raises(CaiError) as exc:
        load_recipe(tmp_path / "r.yaml")
    msg = str(exc.value)
    assert needle in msg and "r.yaml" in msg and "\n" not in msg, msg
