"""Do AI labels carry signal? A verdict from the label stage's own figures, before anything trains on them.

:func:`label_signal` reads the stats of ``cai label`` (:func:`cai.stages.label.outputs.label_stats`)
and, when there is one, the labeler audit against human pairs (``cai audit labeler``,
:func:`cai.audit.labeler.audit_labels`). The labels carry **no signal** when any of
these holds (each failing rule adds a reason):

* fewer than :data:`MIN_PAIRS` (10) labelled pairs: too few to tell anything;
* position consistency (both answer orders pick the same answer) ``<=``
  :data:`MIN_CONSISTENCY` (0.5). A reader that ignores the answers and only
  reacts to position is consistent on 0% of pairs; one that picks at random on
  about 50%; so a rate at or below one half is no evidence that the content of
  the answers moved the label;
* the feedback model's p(option A) is nearly constant over its reads: standard
  deviation below :data:`MIN_READ_SD` (0.02). Each pair is read in both orders,
  so a reader that follows the content moves p(A) between the two reads of a
  pair whatever the pairs' order; a reader stuck near one value does not;
* the labels are bunched just above a coin flip: ``p_chosen`` has a standard
  deviation below :data:`MIN_CHOSEN_SD` (0.02) *and* a mean below
  :data:`NEAR_CHANCE` (0.6). (A small spread alone is no rule: a confident,
  consistent judge gives every pair the same ``p_chosen``.) The embedded 135M
  model labelling 40 hh-rlhf pairs: sd 0.014, mean 0.517;
* more than :data:`MAX_TIE_RATE` (50%) of labelled pairs are exact ties (``p_a == 0.5``),
  the mark of a letter-generating reader that always writes the same letter;
* the reads answer (A) in more than 90% or fewer than 10% of cases
  (:data:`OPTION_A_BOUNDS`): position bias strong enough to swamp the content;
* the audit's both-orders agreement with humans has a 95% interval that includes
  50% (indistinguishable from chance) or lies below it (agrees less than chance).

The thresholds are deliberately loose: they catch labels that are noise, not
labels that are merely weak. ``cai run`` can refuse to train on labels without
signal (see the lead's pipeline); the verdict is stored in ``stats.json`` under
``"signal"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cai.core.stats import NO_SIGNAL_SD

MIN_PAIRS = 10
MIN_CONSISTENCY = 0.5
MIN_READ_SD = NO_SIGNAL_SD
MIN_CHOSEN_SD, NEAR_CHANCE = 0.02, 0.6
MAX_TIE_RATE = 0.5
OPTION_A_BOUNDS = (0.1, 0.9)


@dataclass(frozen=True)
class LabelSignal:
    """The verdict: ``signal`` (True: the labels can be trained on), why not, and the figures read."""

    signal: bool
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``stats.json`` stores under ``"signal"``).

        >>> LabelSignal(False, ["too few"], {"labelled": 2}).to_dict()
        {'signal': False, 'reasons': ['too few'], 'figures': {'labelled': 2}}
        """
        return asdict(self)

    def summary(self) -> str:
        """One line: ``labels carry signal: yes`` or ``labels carry signal: no (reasons)``.

        >>> LabelSignal(True).summary(), LabelSignal(False, ["a", "b"]).summary()
        ('labels carry signal: yes', 'labels carry signal: no (a; b)')
        """
        return ("labels carry signal: yes" if self.signal
                else f"labels carry signal: no ({'; '.join(self.reasons)})")


def _pct(x: float) -> str:
    """A rate as a percentage with one decimal.

    >>> _pct(0.1234)
    '12.3%'
    """
    return f"{100 * x:.1f}%"


def audit_reasons(audit: Mapping[str, Any] | None) -> list[str]:
    """Why an audit says the labeler has no signal (empty when it agrees with humans, or there is no audit).

    ``audit["agreement"]["both"]`` is a proportion dict (``k``, ``n``, ``rate``, ``lo``, ``hi``).

    >>> audit_reasons({"agreement": {"both": {"k": 55, "n": 100, "rate": 0.55, "lo": 0.45, "hi": 0.64}}})
    ['audit agreement with humans 55.0% [45.0%, 64.0%] includes 50% (chance)']
    >>> audit_reasons({"agreement": {"both": {"k": 90, "n": 100, "rate": 0.9, "lo": 0.83, "hi": 0.94}}})
    []
    >>> (audit_reasons(None),
    ...  audit_reasons({"agreement": {"both": {"k": 0, "n": 0, "rate": None, "lo": 0, "hi": 1}}}))
    ([], ['audit labelled no pair'])
    """
    if audit is None:
        return []
    both = audit["agreement"]["both"]
    if not both["n"]:
        return ["audit labelled no pair"]
    span = f"{_pct(both['rate'])} [{_pct(both['lo'])}, {_pct(both['hi'])}]"
    if both["lo"] <= 0.5 <= both["hi"]:
        return [f"audit agreement with humans {span} includes 50% (chance)"]
    if both["hi"] < 0.5:
        return [f"audit agreement with humans {span} is below chance"]
    return []


def label_signal(
    stats: Mapping[str, Any],
    audit: Mapping[str, Any] | None = None,
    *,
    min_pairs: int = MIN_PAIRS,
    min_consistency: float = MIN_CONSISTENCY,
    min_read_sd: float = MIN_READ_SD,
    max_tie_rate: float = MAX_TIE_RATE,
) -> LabelSignal:
    """Whether the labels in ``stats`` (``label_stats`` output) carry signal; see the module doc for the
    rules.

    A consistent judge:

    >>> good = {"labelled": 40, "position_consistency_rate": 0.9, "p_option_a_sd": 0.3, "p_chosen_sd": 0.05,
    ...         "tie_rate": 0.0, "option_a_rate": 0.5}
    >>> label_signal(good).signal
    True

    One that answers (A) whatever it is shown:

    >>> bad = {**good, "position_consistency_rate": 0.11, "p_option_a_sd": 0.015, "option_a_rate": 0.98,
    ...        "mean_p_chosen": 0.52, "p_chosen_sd": 0.01}
    >>> v = label_signal(bad)
    >>> v.signal, len(v.reasons)
    (False, 4)
    >>> v.reasons[0]
    'position consistency 11.0% <= 50%'

    The audit against human labels can veto an otherwise healthy-looking judge:

    >>> chance = {"agreement": {"both": {"k": 52, "n": 100, "rate": 0.52, "lo": 0.42, "hi": 0.62}}}
    >>> label_signal(good, chance).signal
    False
    """
    labelled = int(stats.get("labelled") or 0)
    consistency = stats.get("position_consistency_rate")
    read_sd = stats.get("p_option_a_sd")
    chosen_sd, mean_chosen = stats.get("p_chosen_sd"), stats.get("mean_p_chosen")
    tie_rate = stats.get("tie_rate")
    option_a = stats.get("option_a_rate")
    reasons: list[str] = []
    if labelled < min_pairs:
        reasons.append(f"only {labelled} labelled pair(s), fewer than {min_pairs}")
    if consistency is not None and consistency <= min_consistency:
        reasons.append(f"position consistency {_pct(consistency)} <= {100 * min_consistency:g}%")
    if read_sd is not None and read_sd < min_read_sd:
        reasons.append(f"p(option A) nearly constant over reads (sd {read_sd:.4f} < {min_read_sd})")
    if (chosen_sd is not None and mean_chosen is not None and chosen_sd < MIN_CHOSEN_SD
        and mean_chosen < NEAR_CHANCE):
        reasons.append(f"p_chosen bunched near a coin flip (mean {mean_chosen:.3f}, sd {chosen_sd:.4f})")
    if tie_rate is not None and tie_rate > max_tie_rate:
        reasons.append(f"{_pct(tie_rate)} of labelled pairs are exact ties (> {100 * max_tie_rate:g}%)")
    low, high = OPTION_A_BOUNDS
    if option_a is not None and not low <= option_a <= high:
        reasons.append(f"reads answer (A) {_pct(option_a)} of the time (position bias)")
    reasons += audit_reasons(audit)
    figures: dict[str, Any] = {
        "labelled": labelled,
        "position_consistency_rate": consistency,
        "p_option_a_sd": read_sd,
        "p_chosen_sd": chosen_sd,
        "mean_p_chosen": mean_chosen,
        "tie_rate": tie_rate,
        "option_a_rate": option_a,
    }
    if audit is not None:
        figures["audit_agreement"] = dict(audit["agreement"]["both"])
    return LabelSignal(not reasons, reasons, figures)
