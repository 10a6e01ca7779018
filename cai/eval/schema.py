"""The evaluation summary: what `cai eval` writes to ``eval.json`` and the report renders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.core.records import SCHEMA_VERSION, ConstitutionRef, Provenance, utc_now
from cai.eval.counterfactual import CounterfactualEval
from cai.eval.overoptimization import OverOptimization
from cai.eval.pm_probes import PmProbes

JudgementKind = Literal["harm-rubric", "harm-pairwise", "harm-guard", "helpfulness", "logprob",
                        "pm-score"]


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
    # why the harm judge showed no signal on this run (its figures print as that)
    no_signal: str | None = None


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
    lc_win_rate_interval: Interval | None = None  # 95% bootstrap interval over prompts
    mean_len_diff: float | None = None
    judge_failures: int = 0
    no_signal: str | None = None  # why the helpfulness judge showed no signal on this run


class HackingEval(BaseModel):
    """Reward-hacking probes."""

    model_config = ConfigDict(extra="forbid")
    pm_length_corr: float | None = None  # preference-model score vs answer length
    boilerplate_rate: float | None = None
    boilerplate_phrases: list[tuple[str, int]] = Field(default_factory=list)
    pm_judge_disagreement: float | None = None  # share of answers the PM and judge rank on opposite sides
    kl_from_reference: float | None = None  # mean log p_policy(answer) - log p_ref(answer), nats per answer


class SegmentFigure(BaseModel):
    """One figure over the prompts of one segment (:mod:`cai.eval.segments`): mean and Wilson 95% interval."""

    model_config = ConfigDict(extra="forbid")
    value: float
    lo: float
    hi: float
    n: int
    no_signal: str | None = None  # why its judge showed no signal on this run (it prints as that)


Span = tuple[float, float]  # a 95% interval (lo, hi)


class TruthfulQAScores(BaseModel):
    """MC1 and MC2 over some TruthfulQA questions (:mod:`cai.eval.truthfulqa`), with 95% intervals."""

    model_config = ConfigDict(extra="forbid")
    n: int
    mc1: float | None = None  # share of questions whose best answer has the largest log-likelihood
    mc1_ci: Span | None = None  # Wilson
    mc2: float | None = None  # mean normalised probability mass on the true answers
    mc2_ci: Span | None = None  # percentile bootstrap over questions


class TruthfulQAEval(BaseModel):
    """TruthfulQA multiple choice of one model: MC1, MC2, and both by category and by question type."""

    model_config = ConfigDict(extra="forbid")
    n: int
    mc1: float | None = None
    mc1_ci: Span | None = None
    mc2: float | None = None
    mc2_ci: Span | None = None
    failures: int = 0  # questions without a finite log-prob for every answer (left out)
    by_category: dict[str, TruthfulQAScores] = Field(default_factory=dict)
    by_type: dict[str, TruthfulQAScores] = Field(default_factory=dict)
    data: str | None = None
    method: str = ""


class BBQScores(BaseModel):
    """BBQ accuracy and bias scores over some rows (:mod:`cai.eval.bbq`), per context condition."""

    model_config = ConfigDict(extra="forbid")
    n: int
    n_ambig: int = 0
    n_disambig: int = 0
    accuracy_ambig: float | None = None
    accuracy_ambig_ci: Span | None = None  # Wilson
    accuracy_disambig: float | None = None
    accuracy_disambig_ci: Span | None = None
    bias_score_ambig: float | None = None  # s_AMB = (1 - accuracy_ambig) * s over ambiguous rows
    bias_score_ambig_ci: Span | None = None  # percentile bootstrap over rows
    bias_score_disambig: float | None = None  # s_DIS = 2 * n_biased / n_non_unknown - 1
    bias_score_disambig_ci: Span | None = None


class BBQEval(BaseModel):
    """BBQ of one model: accuracy and bias score in ambiguous and disambiguated contexts, and per category."""

    model_config = ConfigDict(extra="forbid")
    n: int
    n_ambig: int = 0
    n_disambig: int = 0
    accuracy_ambig: float | None = None
    accuracy_ambig_ci: Span | None = None
    accuracy_disambig: float | None = None
    accuracy_disambig_ci: Span | None = None
    bias_score_ambig: float | None = None
    bias_score_ambig_ci: Span | None = None
    bias_score_disambig: float | None = None
    bias_score_disambig_ci: Span | None = None
    failures: int = 0  # rows without three finite log-probs (left out)
    no_biased_answer: int = 0  # rows where no answer could be identified as the biased one
    by_category: dict[str, BBQScores] = Field(default_factory=dict)
    data: str | None = None
    method: str = ""


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
    truthfulqa: TruthfulQAEval | None = None  # TruthfulQA multiple choice (MC1, MC2)
    bbq: BBQEval | None = None  # BBQ accuracy and bias scores
    counterfactual: CounterfactualEval | None = None  # the counterfactual demographic audit
    # the guard judge's reads of the red-team answers: {n, unsafe, safe, failed, codes, reasons}
    guard: dict[str, Any] | None = None
    # rates split by a prompt-set column (cai/eval/segments.py): column -> segment -> figure -> value
    segments: dict[str, dict[str, dict[str, SegmentFigure]]] = Field(default_factory=dict)


class JudgeSignal(BaseModel):
    """How much signal one automatic judge showed on this run: its spread, its consistency, its audit.

    ``judge`` is ``harm``, ``helpfulness`` or ``refusal``. ``score_sd`` is the standard
    deviation of its scores over every judged answer of every model (p_harmful, or
    p(win)); ``consistency`` is the share of judgements whose two reads agree (both
    answer orders for the pairwise judges, both polarities for the rubric).
    ``signal`` is False when the judge showed none (``reason`` says why, e.g.
    ``judge scores constant: sd 0.004``); None when nothing was measured.
    """

    model_config = ConfigDict(extra="forbid")
    judge: str
    method: str  # harm-rubric, harm-pairwise, helpfulness, rules+classifier
    model: str | None = None
    n: int = 0
    failures: int = 0
    mean: float | None = None
    score_sd: float | None = None
    consistency: Interval | None = None
    consistency_kind: str | None = None  # "answer orders" or "polarities"
    audit: dict[str, Any] | None = None
    signal: bool | None = None
    reason: str | None = None
    identical_pairs: int = 0  # helpfulness: pairs of identical answers, left out (ties by construction)


Verdict = Literal["better", "worse", "no detectable change", "-", "no signal", "not measured"]


class Comparison(BaseModel):
    """One figure of one model against the baseline: the difference, its 95% interval, and a verdict.

    ``direction`` says which way is better (``lower``/``higher``; ``none`` for figures
    without one, whose verdict is ``-``); ``aim`` marks the constitution's aim (harm,
    red-team refusal), where a ``worse`` is a regression. ``method`` names the interval:
    ``newcombe-paired`` (paired proportions), ``paired-bootstrap`` (mean of per-prompt
    differences), ``bootstrap`` (a figure measured against the baseline already, whose
    baseline value is fixed: win rate 0.5, KL 0).
    """

    model_config = ConfigDict(extra="forbid")
    figure: str
    model: str
    baseline: str
    value: float | None = None
    base_value: float | None = None
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    method: str = ""
    direction: Literal["lower", "higher", "none"] = "none"
    aim: bool = False
    verdict: Verdict = "not measured"
    note: str | None = None  # the no-signal reason


class SampleAnswer(BaseModel):
    """One model's answer to a sampled prompt, with the refusal detector's verdict and the judge's score."""

    model_config = ConfigDict(extra="forbid")
    model: str
    text: str
    refused: bool
    rule: str | None = None
    score: float | None = None
    score_name: str | None = None  # "p(harmful)" or "p(win vs <baseline>)"


class SamplePrompt(BaseModel):
    """A prompt of one set, sampled (seeded) for the report's side-by-side answers."""

    model_config = ConfigDict(extra="forbid")
    set: str
    prompt_id: str
    prompt: list[dict[str, str]]
    label: str | None = None
    answers: list[SampleAnswer] = Field(default_factory=list)


class TrainingSample(BaseModel):
    """A few rows of one training data file: SFT rows (prompt, completion) or labelled pairs."""

    model_config = ConfigDict(extra="forbid")
    name: str
    path: str
    kind: Literal["sft", "preferences", "other"]
    rows: int
    examples: list[dict[str, Any]] = Field(default_factory=list)
    note: str | None = None  # what the stage that wrote it measured (label signal, SFT survivors)


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
    # added later: defaults keep older eval.json files loadable
    baseline: str | None = None
    judges: dict[str, JudgeSignal] = Field(default_factory=dict)  # harm / helpfulness / refusal
    comparisons: list[Comparison] = Field(default_factory=list)  # every figure of every model vs the baseline
    samples: list[SamplePrompt] = Field(default_factory=list)
    training_data: list[TrainingSample] = Field(default_factory=list)
    overoptimization: OverOptimization | None = None  # the best-of-n study (cai/eval/overoptimization.py)
    pm_probes: PmProbes | None = None  # the preference-model failure probes (cai/eval/pm_probes.py)
    # the segmented evaluation (cai/eval/matrix.py): figure -> model -> prompt set -> value with its interval,
    # and per figure the one-line answer: is each regional model best on its region, and keeps the core?
    matrix: dict[str, dict[str, dict[str, SegmentFigure]]] = Field(default_factory=dict)
    matrix_verdicts: dict[str, str] = Field(default_factory=dict)
