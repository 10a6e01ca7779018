"""The recipe of ``cai run``: one YAML file, one nested pydantic config, unknown keys rejected.

A recipe names the policy model, the constitution, the prompt files and one
section per stage (``critique``, ``sft``, ``answers``, ``label``, ``rm``,
``policy``, ``eval``, ``hub``). Input paths (prompt files, constitution files,
human labels; record inputs may also be CSV/parquet files, dataset folders or hub ids,
see :mod:`cai.sources`) are resolved relative to the recipe file; ``run_dir`` is relative
to the current directory (default ``runs/<name>``). Loading, line numbers in
errors and ``variants`` live in :mod:`cai.run.load`.

>>> r = Recipe.model_validate({"name": "t", "prompts": {"redteam": ["r.jsonl"]}},
...                           context={"base": Path("/x")})
>>> r.prompts.redteam, r.policy.method, r.rm is None
([PosixPath('/x/r.jsonl')], 'dpo', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cai.backends.spec import BackendSpec
from cai.stages.label.pools import PoolWeighting

if TYPE_CHECKING:
    from cai.constitution.schema import Constitution
    from cai.stages.critique.stage import CritiqueStageConfig
    from cai.stages.label.stage import LabelStageConfig

STAGE_ORDER = ("split", "critique", "sft", "answers", "label", "rm", "policy", "eval")
ROUND_STAGES = ("answers", "label", "policy")  # what each later round of ``rounds: N`` repeats


def round_stage(stage: str, r: int) -> str:
    """The name of ``stage`` in round ``r`` (round 1 keeps the plain names, so one-round keys do not change).

    >>> round_stage("label", 1), round_stage("label", 2)
    ('label', 'label_r2')
    """
    return stage if r == 1 else f"{stage}_r{r}"


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """A path relative to the recipe file's folder (``context["base"]``); absolute paths stay."""
    base = (info.context or {}).get("base")
    return value if value.is_absolute() or base is None else Path(base) / value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, Path)) else value


def _resolve_source(value: Path, info: ValidationInfo) -> Path:
    """A record source (:mod:`cai.sources`) relative to the recipe's folder; hub ids and absolute paths stay.

    >>> from types import SimpleNamespace as NS
    >>> _resolve_source(Path("p.csv#prompt=q"), NS(context={"base": "/r"})), _resolve_source(
    ...     Path("org/set:test"), NS(context={"base": "/r"}))
    (PosixPath('/r/p.csv#prompt=q'), PosixPath('org/set:test'))
    """
    from cai.sources.spec import resolve_source

    return Path(resolve_source(str(value), (info.context or {}).get("base")))


RelPath = Annotated[Path, AfterValidator(_resolve)]
RelPaths = Annotated[list[RelPath], BeforeValidator(_listify)]
RelSource = Annotated[Path, AfterValidator(_resolve_source)]  # a file, dataset folder or hub id
RelSources = Annotated[list[RelSource], BeforeValidator(_listify)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(BackendSpec):
    """A model and how to reach it (:class:`~cai.backends.spec.BackendSpec`), plus what the trainers load.

    ``weights`` (a hub id or path) is what training starts from when ``name`` is a server's model name.
    """

    weights: str | None = None
    # local (in process) | {server: URL} | {managed: vllm | sglang | llama-server | transformers, args: {...}}
    engine: Any = "local"

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        from cai.core.errors import CaiError
        from cai.engines.spec import parse_engine

        try:
            return parse_engine(value, "engine")
        except CaiError as exc:
            raise ValueError(f"{exc.message.removeprefix('engine: ')} ({exc.hint})") from None

    def train_weights(self) -> str:
        """What the trainers start from."""
        return self.weights or self.name

    def identity(self) -> dict[str, Any]:
        """What determines this model's outputs (not how many requests fly at once): a served model's
        answers are not byte-identical to in-process ones, so a non-local engine is part of it.

        >>> ModelSpec().identity() == ModelSpec(engine="local").identity()
        True
        >>> ModelSpec(engine={"managed": "vllm"}).identity()["engine"]["managed"]
        'vllm'
        """
        engine = ({} if self.engine == "local" else
                  {"engine": self.engine.model_dump(mode="json", exclude={"concurrency", "startup_timeout"})})
        return {**super().identity(), "weights": self.weights, **engine}


class LoraSpec(_Section):
    r: int = Field(16, ge=1)
    alpha: int = 32
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None


class TrainSpec(_Section):
    """Trainer options shared by every training stage; ``config`` holds the trainer's own keys (TRL's
    names)."""

    learning_rate: float | None = None
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    max_length: int | None = None
    seed: int | None = None
    logging_steps: int | None = None
    report_to: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    lora: LoraSpec | None = None
    dtype: str | None = None
    accelerate_config: str | None = None  # ddp, fsdp, zero3 or an accelerate config file
    num_processes: int | None = None

    def options(self) -> dict[str, Any]:
        """Trainer config keys: ``config`` first, the named options over it (only those set).

        >>> TrainSpec(max_steps=3, config={"beta": 0.2}).options()
        {'beta': 0.2, 'max_steps': 3}
        """
        named = {"learning_rate": self.learning_rate, "max_steps": self.max_steps,
                 "num_train_epochs": self.epochs, "per_device_train_batch_size": self.batch_size,
                 "gradient_accumulation_steps": self.grad_accum, "max_length": self.max_length,
                 "seed": self.seed, "logging_steps": self.logging_steps, "report_to": self.report_to}
        return {**self.config, **{k: v for k, v in named.items() if v is not None}}


class PromptsSpec(_Section):
    """Prompt sources (JSONL/CSV/parquet files, dataset folders, hub ids: see :mod:`cai.sources`), split
    into train and held-out eval parts by a hash of each prompt."""

    redteam: RelSources
    helpful: RelSources = Field(default_factory=list)
    eval_fraction: float = Field(0.33, ge=0, lt=1)
    seed: int = 0
    limit: int | None = Field(None, ge=1)  # at most this many train red-team prompts
    helpful_limit: int | None = Field(None, ge=0)
    eval_limit: int | None = Field(None, ge=1)  # at most this many held-out prompts of each kind
    # XSTest-format look-alikes (label safe|unsafe), split like the others: the train part's safe prompts
    # join the helpful ones, its unsafe contrasts the red-team ones; the held-out part is the eval's set
    lookalike: RelSource | None = None
    lookalike_eval_fraction: float | None = Field(None, gt=0, lt=1)  # default: eval_fraction


class CritiqueSpec(_Section):
    rounds: int = Field(2, ge=0, le=32)  # 0: initial answers only, for sft_source: initial
    samples_per_prompt: int = Field(1, ge=1)
    helpful_samples: int | None = Field(None, ge=1)  # samples of each helpful prompt (default: the same)
    no_critique: bool = False
    few_shot: bool = True
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    batch_size: int = Field(16, ge=1)
    helpful_ratio: float = Field(1.0, ge=0)
    sft_round: int | None = Field(None, ge=1)
    sft_source: Literal["revision", "initial", "best"] = "revision"  # initial: context distillation
    min_sft_fraction: float = Field(0.1, ge=0, le=1)  # stop when fewer red-team traces survive the gates
    refusal_gate: bool = False  # red-team SFT targets must decline, helpful ones must not (refusal detector)
    trim_truncated: bool = False  # answers cut at max_new_tokens: trimmed to the last sentence, not dropped
    answer_few_shot: bool = False  # the initial answers see the constitution's examples first
    dtype: str | None = None  # the model's dtype for this stage's sampling (int8: CPU fast path)

    def stage_config(self, seed: int) -> CritiqueStageConfig:
        """The :class:`~cai.stages.critique.stage.CritiqueStageConfig` this section asks for."""
        from cai.core.records import SamplingParams
        from cai.stages.critique.loop import CritiqueConfig
        from cai.stages.critique.stage import CritiqueStageConfig

        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                top_p=self.top_p, seed=seed)
        loop = CritiqueConfig(rounds=self.rounds, samples_per_prompt=self.samples_per_prompt,
                              no_critique=self.no_critique, few_shot=self.few_shot,
                              batch_size=self.batch_size, answer_few_shot=self.answer_few_shot,
                              helpful_samples=self.helpful_samples, params=params)
        return CritiqueStageConfig(loop=loop, helpful_ratio=self.helpful_ratio, sft_round=self.sft_round,
                                   sft_source=self.sft_source, refusal_gate=self.refusal_gate,
                                   trim_truncated=self.trim_truncated)


class SFTSpec(_Section):
    train: TrainSpec = TrainSpec()
    eval_fraction: float = Field(0.0, ge=0, lt=1)


class AnswersSpec(_Section):
    """Candidate answers for the labeler: ``k`` samples per train prompt from the SFT (or base) model."""

    source: Literal["sft", "base", "critique"] = "sft"  # critique: pair the critique stage's own samples
    k: int = Field(2, ge=2)
    pairing: Literal["all", "disjoint"] = "all"
    temperature: float = Field(0.8, ge=0.7)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    helpful: bool = True  # also answer the train helpful prompts
    system_prompt: bool = False  # answer under the constitution's system prompt
    dtype: str | None = None  # the sampling model's dtype here (int8: CPU fast path); default: the model's


class LabelSpec(_Section):
    feedback_model: ModelSpec | None = None  # default: the recipe's model
    principles_per_pair: int = Field(1, ge=1)
    cot: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    cot_max_new_tokens: int = 256
    few_shot: bool = True
    min_confidence: float = Field(0.5, ge=0.5, le=1)
    drop_inconsistent: bool = False
    # human: [files], or {files: [...], pools: {eu: 1.0, us: 0.5}, balance: equal} (annotator pools)
    human: RelSources = Field(default_factory=list)
    human_weight: float = Field(1.0, ge=0)
    human_pools: PoolWeighting | None = None  # what the mapping form of `human:` sets
    pairs_per_call: int = Field(8, ge=1)
    feedback_batch_size: int = Field(8, ge=1)
    keep_ties: bool = False  # exact ties (p_chosen 0.5) are dropped unless kept
    # `cai audit labeler` audit.json of this feedback model (signal check)
    labeler_audit: RelPath | None = None

    @model_validator(mode="before")
    @classmethod
    def _human_mapping(cls, data: Any) -> Any:
        """``human: {files, pools, balance}`` as ``human`` (the files) plus ``human_pools`` (the weighting).

        >>> s = LabelSpec.model_validate({"human": {"files": ["h.jsonl"], "balance": "equal"}})
        >>> s.human, s.human_pools.balance
        ([PosixPath('h.jsonl')], 'equal')
        """
        if not isinstance(data, dict) or not isinstance(data.get("human"), dict):
            return data
        human = data["human"]
        unknown = sorted(set(human) - {"files", "pools", "balance"})
        if unknown:
            raise ValueError(f"human: unknown key {unknown[0]!r} (the mapping form takes files, pools, "
                             "balance: e.g. {files: [h.jsonl], balance: equal})")
        if "human_pools" in data:
            raise ValueError("human_pools is set by human: {pools, balance}: give it in one place")
        pools = {k: human[k] for k in ("pools", "balance") if k in human}
        try:
            weighting = PoolWeighting.model_validate(pools) if pools else None
        except ValidationError as exc:  # named as written (human.balance), not as kept (human_pools)
            err = exc.errors()[0]
            raise ValueError(f"human.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        return {**data, "human": human.get("files", []), **({"human_pools": weighting} if weighting else {})}

    def stage_config(self, seed: int) -> LabelStageConfig:
        """The :class:`~cai.stages.label.stage.LabelStageConfig` of this section (its keys of the same
        names)."""
        from cai.stages.label.stage import LabelStageConfig

        keys = set(LabelStageConfig.model_fields) & set(type(self).model_fields)
        return LabelStageConfig(seed=seed, **self.model_dump(include=keys))


class RMSpec(_Section):
    start_from: Literal["sft", "base"] = "sft"
    allow_weak_labels: bool = False  # train on AI labels that carry no signal (and no human labels)
    train: TrainSpec = TrainSpec()
    pad_token: str | None = None
    margin: float | None = None
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    human_eval: RelSource | None = None


class PolicySpec(_Section):
    """The last training step: DPO on the labels, or online RL (PPO/RLOO/GRPO) against a reward; ``none``
    skips."""

    method: Literal["dpo", "ppo", "rloo", "grpo", "none"] = "dpo"
    train: TrainSpec = TrainSpec()
    beta: float | None = None
    soft_labels: bool = False
    loss_type: list[str] | None = None
    ref_model: str | None = None
    eval_fraction: float = Field(0.0, ge=0, lt=1)
    reward: str = "rm"  # rm (this run's preference model), judge:MODEL, toy:...
    judge_question: str | None = None
    reward_batch_size: int = Field(8, ge=1)
    system_prompt: bool = False  # online RL: answer under the constitution's system prompt
    allow_weak_labels: bool = False  # train on AI labels that carry no signal (and no human labels)
    # rounds > 1: each later round's DPO reference: the previous round's policy, or the round-1 start (sft)
    reference: Literal["previous", "initial"] = "previous"


class EvalStageSpec(_Section):
    """Before/after evaluation on the held-out prompts (:class:`cai.eval.spec.EvalSpec`).

    ``models`` are compared, the first is the baseline; ``trained`` is the policy
    (the SFT model when ``policy.method`` is ``none``). ``options`` are further
    EvalSpec keys (``judge``, ``limit``, ``few_shot``, ``truthfulqa_limit``, ``bbq_limit``...), checked
    when the stage runs. ``truthfulqa`` and ``bbq`` add the multiple-choice benchmarks (files beside the
    recipe or absolute paths).
    """

    enabled: bool = True
    models: list[Literal["base", "sft", "trained"]] = Field(default_factory=lambda: ["base", "trained"],
                                                            min_length=1)
    lookalike: RelSource | None = None  # XSTest-format file (label: safe|unsafe)
    judge_audit: RelPath | None = None  # `cai audit judge` audit.json: the harm judge against human labels
    refusal_audit: RelPath | None = None  # `cai audit refusal` audit.json: the refusal detector's accuracy
    truthfulqa: RelPath | None = None  # TruthfulQA rows: MC1/MC2 of every compared model (from log-probs)
    bbq: RelPath | None = None  # BBQ rows: accuracy and bias scores of every compared model
    feedback_model: ModelSpec | None = None  # the judge; default: the recipe's model
    max_new_tokens: int = Field(128, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class AdapterSpec(_Section):
    """How a region's LoRA adapter is trained on top of the core policy: ``dpo`` on the region's AI labels
    (the reference is the core policy: the adapter switched off), or ``sft`` on the region's critique
    stage's SFT set (context distillation, for models whose labels carry no signal)."""

    method: Literal["dpo", "sft"] = "dpo"
    lora: LoraSpec = LoraSpec()
    train: TrainSpec = TrainSpec()
    beta: float | None = None
    allow_weak_labels: bool = False  # dpo: train on AI labels that carry no signal (and no human labels)


def inherit(base: BaseModel, over: BaseModel) -> Any:
    """``base`` with the fields ``over`` was given explicitly (its ``model_fields_set``) taken from ``over``.

    >>> inherit(CritiqueSpec(rounds=3, temperature=0.5), CritiqueSpec(rounds=1)).model_dump(
    ...     include={"rounds", "temperature"})
    {'rounds': 1, 'temperature': 0.5}
    """
    return base.model_copy(update={k: getattr(over, k) for k in over.model_fields_set})


class RegionSpec(_Section):
    """One regional layer: its constitution (a file or shipped name, e.g. a layer that ``extends`` the
    core's), its own prompts, and the keys of ``critique``, ``answers``, ``label`` and ``adapter`` it changes
    (the rest come from the recipe's sections). ``prompts`` takes the keys of the recipe's ``prompts``:
    ``redteam`` is required and ``lookalike`` is the region's own; the others default to the core's."""

    constitution: str
    prompts: PromptsSpec
    critique: CritiqueSpec = CritiqueSpec()
    answers: AnswersSpec = AnswersSpec()
    label: LabelSpec = LabelSpec()
    adapter: AdapterSpec = AdapterSpec()

    @model_validator(mode="before")
    @classmethod
    def _constitution_path(cls, data: Any, info: ValidationInfo) -> Any:
        return _constitution_file(data, info)


class HubSpec(_Section):
    """Where ``--push-to-hub`` pushes: ``namespace/<recipe name>-<artifact>``."""

    namespace: str | None = None
    private: bool = True
    artifacts: list[Literal["sft_data", "preferences", "sft", "rm", "policy"]] = Field(
        default_factory=lambda: ["sft_data", "preferences", "sft", "rm", "policy"])


class Recipe(_Section):
    """One ``cai run`` recipe (see the module doc and ``examples/recipes/``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    run_dir: Path | None = None
    model: ModelSpec = ModelSpec()
    constitution: str = "harmless"
    prompts: PromptsSpec
    critique: CritiqueSpec = CritiqueSpec()
    sft: SFTSpec = SFTSpec()
    answers: AnswersSpec = AnswersSpec()
    label: LabelSpec = LabelSpec()
    rm: RMSpec | None = None
    policy: PolicySpec = PolicySpec()
    eval: EvalStageSpec = EvalStageSpec()
    hub: HubSpec = HubSpec()
    rounds: int = Field(1, ge=1, le=20)  # iterative RLAIF: answers -> label -> policy (DPO), N times
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # one core, regional layers: a LoRA adapter per region on top of this recipe's policy (cai.run.regions)
    regions: dict[str, RegionSpec] = Field(default_factory=dict)
    adapter: AdapterSpec = AdapterSpec()  # every region's adapter settings (a region's own keys win)

    @model_validator(mode="before")
    @classmethod
    def _constitution_path(cls, data: Any, info: ValidationInfo) -> Any:
        return _constitution_file(data, info)

    @field_validator("regions")
    @classmethod
    def _region_names(cls, v: dict[str, RegionSpec]) -> dict[str, RegionSpec]:
        import re

        for name in v:
            if name == "core" or not re.match(r"^[a-z0-9][a-z0-9_-]*$", name) or len(name) > 32:
                raise ValueError(f"region name {name!r}: use lower-case letters, digits, '_' and '-' "
                                 "(and not 'core', the core layer's name)")
        return v

    @model_validator(mode="after")
    def _reward_needs_rm(self) -> Recipe:
        if self.policy.method in ("ppo", "rloo", "grpo") and self.policy.reward == "rm" and self.rm is None:
            raise ValueError(f"policy.method {self.policy.method} with reward: rm needs an rm section "
                             "(add `rm: {}`), or set policy.reward to judge:MODEL")
        if self.rounds > 1 and self.policy.method != "dpo":
            raise ValueError(f"rounds {self.rounds} iterates DPO (sample from the latest policy, label, "
                             f"train): set policy.method: dpo, or rounds: 1")
        if self.critique.rounds == 0 and self.critique.sft_source != "initial":
            raise ValueError("critique.rounds 0 makes no revision to train on: set "
                             "critique.sft_source: initial, or rounds >= 1")
        if self.critique.sft_round is not None and self.critique.sft_round > self.critique.rounds:
            raise ValueError(f"critique.sft_round {self.critique.sft_round} is after the last round")
        if self.regions and self.variants:
            raise ValueError("regions and variants: give one (regions trains one core and an adapter per "
                             "region; variants trains separate full models)")
        return self

    def stage_names(self) -> list[str]:
        """The stages this recipe runs, in order.

        >>> Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, rm={}).stage_names()
        ['split', 'critique', 'sft', 'answers', 'label', 'rm', 'policy', 'eval']
        >>> Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, policy={"method": "none"},
        ...        eval={"enabled": False}).stage_names()
        ['split', 'critique', 'sft', 'answers', 'label']
        >>> Recipe(name="t", prompts={"redteam": ["r.jsonl"]}, rounds=3).stage_names()[5:]
        ['policy', 'answers_r2', 'label_r2', 'policy_r2', 'answers_r3', 'label_r3', 'policy_r3', 'eval']
        """
        skip = {"rm"} if self.rm is None else set()
        if self.policy.method == "none":
            skip.add("policy")
        if not self.eval.enabled:
            skip.add("eval")
        names = [s for s in STAGE_ORDER if s not in skip]
        later = [round_stage(s, r) for r in range(2, self.rounds + 1) for s in ROUND_STAGES]
        at = names.index("policy") + 1 if "policy" in names else len(names)
        names = names[:at] + later + names[at:]
        if self.regions:  # the core's model, then each region's chain, then the eval (cai.run.regions)
            at = names.index("eval") if "eval" in names else len(names)
            names = names[:at] + ["core"] + [s for r in self.regions for s in self.region_stage_names(r)] \
                + names[at:]
        return names

    def adapter_for(self, region: str) -> AdapterSpec:
        """Region ``region``'s adapter settings: the recipe's ``adapter:``, the region's own keys over it."""
        return inherit(self.adapter, self.regions[region].adapter)

    def region_stage_names(self, region: str) -> list[str]:
        """Region ``region``'s stages, in order (no answers/label for an ``sft`` adapter).

        >>> r = Recipe.model_validate({"name": "t", "prompts": {"redteam": "r.jsonl"}, "regions": {
        ...     "eu": {"constitution": "eu", "prompts": {"redteam": "eu.jsonl"},
        ...            "adapter": {"method": "sft"}}}})
        >>> r.region_stage_names("eu")
        ['regions/eu/split', 'regions/eu/critique', 'regions/eu/adapter']
        """
        labels = ("answers", "label") if self.adapter_for(region).method == "dpo" else ()
        return [f"regions/{region}/{s}" for s in ("split", "critique", *labels, "adapter")]

    def feedback(self) -> ModelSpec:
        return self.label.feedback_model or self.model


def _constitution_file(data: Any, info: ValidationInfo) -> Any:
    """A ``constitution`` given as a path is resolved from the recipe's folder; a shipped name stays a
    name."""
    base = (info.context or {}).get("base")
    if isinstance(data, dict) and isinstance(data.get("constitution"), str) and base is not None:
        p = Path(base) / data["constitution"]
        if p.suffix in (".yaml", ".yml") or p.exists():
            data = {**data, "constitution": str(p)}
    return data


def recipe_constitution(recipe: Recipe) -> Constitution:
    """The recipe's constitution, loaded and resolved (a file, or a shipped name)."""
    from cai.constitution.load import load_constitution

    return load_constitution(recipe.constitution)
