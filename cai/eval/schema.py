"""The evaluation summary: what `cai eval` writes to ``eval.json`` and the report renders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.core.records import SCHEMA_VERSION, ConstitutionRef, Provenance, utc_now

JudgementKind = Literal["harm-rubric", "harm-pairwise", "helpfulness", "logprob", "pm-score"]


class EvalJudgement(BaseModel):
    """One line of a judgement file: what a judge (or scorer) said about one answer, raw reads kept.

    ``value`` is the parsed figure: p(harmful) for the harm judges, p(model's answer
    better than the baseline's) for ``helpfulness``, the summed log-probability of
    the answer under ``provenance.model`` for ``logprob``, the preference model's
    score for ``pm-score``; ``None`` when the judge failed (``error`` says why).
    ``reads`` keeps every raw read (option log-probs, each order's p(A), generated text).
    """

    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    kind: JudgementKind
    model: str  # name of the evaluated model
    answer_id: str
    other_answer_id: str | None = None  # the baseline's answer, for pairwise judgements
    prompt_id: str
    value: float | None = None
    reads: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    provenance: Provenance


class Interval(BaseModel):
    """A rate with its 95% interval over ``n`` items."""

    model_config = ConfigDict(extra="forbid")
    rate: float
    lo: float
    hi: float
    n: int


class HarmEval(BaseModel):
    """Red-team prompts: how often the model complies harmfully, and how often it refuses."""

    model_config = ConfigDict(extra="forbid")
    harmful: Interval | None = None  # judge: p(harmful) > 0.5
    mean_p_harmful: float | None = None
    refusal: Interval  # transparent refusal detector
    judge_failures: int = 0


class OverRefusalEval(BaseModel):
    """XSTest-style prompts: refusals of safe look-alikes (over-refusal) and of their unsafe contrasts."""

    model_config = ConfigDict(extra="forbid")
    safe_refusal: Interval | None = None
    unsafe_refusal: Interval | None = None


class HelpfulnessEval(BaseModel):
    """Pairwise win rate against a baseline on benign instructions, both orders judged."""

    model_config = ConfigDict(extra="forbid")
    baseline: str
    win_rate: Interval
    lc_win_rate: float | None = None
    mean_len_diff: float | None = None
    judge_failures: int = 0


class HackingEval(BaseModel):
    """Reward-hacking probes."""

    model_config = ConfigDict(extra="forbid")
    pm_length_corr: float | None = None  # preference-model score vs answer length
    boilerplate_rate: float | None = None
    boilerplate_phrases: list[tuple[str, int]] = Field(default_factory=list)
    pm_judge_disagreement: float | None = None  # share of answers the PM and judge rank on opposite sides
    kl_from_reference: float | None = None  # mean log p_policy(answer) - log p_ref(answer), nats per answer


class ModelEval(BaseModel):
    """Everything measured for one model."""

    model_config = ConfigDict(extra="forbid")
    name: str
    model: str
    harm: HarmEval | None = None
    over_refusal: OverRefusalEval | None = None
    helpfulness: HelpfulnessEval | None = None
    hacking: HackingEval | None = None
    mean_answer_chars: float | None = None
    answers: dict[str, str] = Field(default_factory=dict)  # set name -> answers file


class EvalSummary(BaseModel):
    """The whole evaluation: one entry per model, plus context for the report."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    created_at: str = Field(default_factory=utc_now)
    constitution: ConstitutionRef | None = None
    feedback_model: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    models: list[ModelEval]
    curves: dict[str, list[dict[str, float]]] = Field(default_factory=dict)  # run name -> logged steps
    labeler_audit: dict[str, Any] | None = None
