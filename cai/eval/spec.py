"""What to evaluate: the :class:`EvalSpec` that ``cai eval`` (options or ``--spec FILE``) and ``cai run``
build.

A spec names the models (each a name and a model path, hub id or ``default``),
the baseline the win rate and the KL are measured against, the feedback model
that judges, the prompt sets, the multiple-choice benchmarks (TruthfulQA, BBQ),
and the extra inputs of the report (training curves, the labeler audit, the
judge and refusal-detector audits, a sample of the training data, how many
prompts per set to show side by side). It is plain data:
:func:`cai.eval.run.evaluate` does the work.

>>> spec = EvalSpec(models=[EvalModel(name="base", model="default"),
...                         EvalModel(name="dpo", model="runs/x/dpo")],
...                 redteam="examples/prompts/redteam.jsonl")
>>> spec.baseline_name(), spec.judge, spec.max_new_tokens, spec.samples
('base', 'rubric', 128, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cai.core.errors import CaiError
from cai.eval.matrix import MatrixSpec

BackendKind = Literal["hf", "openai"]
# the inputs that select work
SECTIONS = ("redteam", "lookalike", "benign", "truthfulqa", "bbq", "counterfactual", "matrix")
SHIPPED = ("shipped", "default")  # counterfactual: these words name the shipped templates
Name = str


class EvalModel(BaseModel):
    """One model to evaluate: a short name for the report and where the model is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=64)  # e.g. base, core+eu
    model: str = Field(min_length=1)  # 'default', a hub id, a local dir, or the server's model name
    backend: BackendKind = "hf"
    base_urls: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _urls(self) -> EvalModel:
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("backend openai needs base_urls (e.g. [http://127.0.0.1:8000/v1])")
        if self.backend == "hf" and self.base_urls:
            raise ValueError("base_urls are only for backend openai")
        return self


class EvalSpec(BaseModel):
    """Everything :func:`cai.eval.run.evaluate` needs; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    models: list[EvalModel] = Field(min_length=1)
    baseline: str | None = None  # name of the model the win rate and KL are against; default: the first
    constitution: str = "harmless"  # a constitution file or shipped name
    system_prompt: str | None = None  # the policies' system prompt while answering (default: none)
    # the feedback (judge) model
    feedback_model: str = "default"
    feedback_backend: BackendKind = "hf"
    feedback_base_urls: list[str] = Field(default_factory=list)
    judge: Literal["rubric", "pairwise", "guard"] = "rubric"
    few_shot: bool = False  # pairwise harm judge: show the constitution's feedback examples first
    preference_model: Path | None = None  # a `cai train rm` dir, for the reward-hacking probes
    # prompt sets (JSONL, {"prompt": ...}); lookalike rows carry "label": safe|unsafe (XSTest format)
    redteam: Path | None = None
    lookalike: Path | None = None
    benign: Path | None = None
    limit: int | None = Field(None, ge=1)  # first N prompts of each set (lookalike: N safe and N unsafe)
    # prompt-set columns (metadata keys) every rate is also split by (cai/eval/segments.py); None: the
    # red-team set's category column when it has one (category, SemanticCategory, risk_area); []: none
    segment_by: list[str] | None = None
    # multiple-choice benchmarks, scored from log-probs (cai/eval/truthfulqa.py, cai/eval/bbq.py); `limit`
    # does not apply to them
    truthfulqa: Path | None = None  # rows: question, best_answer, correct_answers, incorrect_answers
    bbq: Path | None = None  # BBQ rows as published (context, question, ans0..2, label, answer_info, ...)
    truthfulqa_limit: int | None = Field(None, ge=1)  # first N questions
    bbq_limit: int | None = Field(None, ge=1)  # first N/categories rows of each category, in file order
    # generation
    max_new_tokens: int = Field(128, ge=1, le=32768)
    seed: int = 0
    # hf: sequences per forward pass while answering (64: 1.6x faster than 16 on CPU)
    batch_size: int = Field(64, ge=1)
    feedback_batch_size: int = Field(8, ge=1)  # hf: judge chats per forward pass
    device: str | None = None
    dtype: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    # report inputs
    curves: dict[str, Path] = Field(default_factory=dict)  # run name -> metrics.jsonl or trainer_state.json
    audit: Path | None = None  # audit.json from `cai audit labeler`
    judge_audit: Path | None = None  # audit.json from `cai audit judge`: the harm judge against human labels
    refusal_audit: Path | None = None  # audit.json from `cai audit refusal`: the refusal detector's accuracy
    samples: int = Field(4, ge=0)  # prompts per set shown side by side in the report (seeded draw)
    # e.g. {sft: critique/sft.jsonl, preferences: ...}
    training_data: dict[str, Path] = Field(default_factory=dict)
    # guard-model harm judge (judge: guard; cai/eval/guard.py): the task prompt and categories (default:
    # Llama Guard 3's), its answer budget, and the judge's chat template ('plain-llama3', a file or the text)
    guard_template: Path | None = None
    guard_categories: Path | None = None
    guard_max_new_tokens: int = Field(24, ge=2, le=512)
    feedback_chat_template: str | None = None
    # counterfactual demographic audit (cai/eval/counterfactual.py): templates JSONL ('shipped': the
    # packaged ones), groups YAML (default: groups.yaml beside the templates), which axes, judge the answers
    counterfactual: Path | None = None
    counterfactual_groups: Path | None = None
    counterfactual_axes: list[str] | None = None
    counterfactual_judge: bool = False
    # reward over-optimization (cai/eval/overoptimization.py): best-of-n against preference_model for
    # these n, sampled from bon_model (default: the baseline) on the first bon_limit prompts of bon_set;
    # gold: a second preference model, else the harm judge; checkpoints: JSONL {name, step, kl, proxy, gold}
    best_of_n: list[int] | None = None
    bon_model: str | None = None
    bon_set: Literal["benign", "redteam"] = "benign"
    bon_limit: int = Field(16, ge=1)
    bon_temperature: float = Field(1.0, gt=0)
    gold_preference_model: Path | None = None
    checkpoints: Path | None = None
    # preference-model failure probes (cai/eval/pm_probes.py): controlled edits of up to pm_probes_limit
    # answers, and the pm_probes_top answers the PM likes best
    pm_probes: bool = False
    pm_probes_limit: int = Field(200, ge=1)
    pm_probes_top: int = Field(10, ge=1)
    # segmented evaluation (cai/eval/matrix.py): named red-team / look-alike sets every model answers, e.g.
    # {sets: {core: examples/prompts, eu: {redteam: ..., lookalike: ...}}}; the figures as models x sets
    matrix: MatrixSpec | None = None

    @field_validator("constitution", mode="before")
    @classmethod
    def _path_ok(cls, v: object) -> object:
        return str(v) if isinstance(v, Path) else v

    @field_validator("counterfactual", mode="before")
    @classmethod
    def _shipped(cls, v: object) -> object:
        if isinstance(v, str) and v in SHIPPED:
            from cai.shipped import prompts_dir

            return prompts_dir() / "counterfactual" / "templates.jsonl"
        return v

    @field_validator("best_of_n")
    @classmethod
    def _ladder(cls, v: list[int] | None) -> list[int] | None:
        bad = [n for n in v or [] if not 1 <= n <= 64]
        if v is not None and (not v or bad):
            raise ValueError(f"n={bad[0] if bad else 'none'} is not between 1 and 64 (e.g. 1,2,4,8,16)")
        return sorted(set(v)) if v else v

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[EvalModel]) -> list[EvalModel]:
        seen: set[str] = set()
        for m in v:
            if m.name in seen:
                raise ValueError(f"model name '{m.name}' is used twice")
            seen.add(m.name)
        return v

    @model_validator(mode="after")
    def _check(self) -> EvalSpec:
        names = [m.name for m in self.models]
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not one of the models ({', '.join(names)})")
        if all(getattr(self, k) is None for k in SECTIONS):
            raise ValueError("no prompt set: give at least one of " + ", ".join(SECTIONS))
        if self.feedback_backend == "openai" and not self.feedback_base_urls:
            raise ValueError("feedback_backend openai needs feedback_base_urls")
        self._check_studies(names)
        if self.matrix is not None:
            self.matrix.check(names)
        return self

    def _check_studies(self, names: list[str]) -> None:
        """The options of the guard judge, the counterfactual audit, best-of-n and the PM probes fit."""
        if self.judge != "guard" and (self.guard_template or self.guard_categories):
            raise ValueError("guard_template and guard_categories are only for judge guard")
        if self.counterfactual is None and (self.counterfactual_groups or self.counterfactual_axes
                                            or self.counterfactual_judge):
            raise ValueError("counterfactual (a templates file, or 'shipped') is needed by "
                             "counterfactual_groups, counterfactual_axes and counterfactual_judge")
        if (self.best_of_n or self.pm_probes) and self.preference_model is None:
            raise ValueError("preference_model is needed by best_of_n and pm_probes")
        if self.best_of_n is None and (self.gold_preference_model or self.checkpoints or self.bon_model):
            raise ValueError("best_of_n is needed by gold_preference_model, checkpoints and bon_model")
        if self.bon_model is not None and self.bon_model not in names:
            raise ValueError(f"bon_model '{self.bon_model}' is not one of the models ({', '.join(names)})")
        if self.best_of_n and getattr(self, self.bon_set) is None:
            raise ValueError(f"bon_set '{self.bon_set}': no {self.bon_set} prompt set is given")

    def baseline_name(self) -> str:
        """The baseline's name: the given one, else the first model's."""
        return self.baseline or self.models[0].name


def parse_model_option(item: str) -> EvalModel:
    """A ``--model NAME=PATH`` option as an :class:`EvalModel` (a bare PATH is named after its last part).

    >>> parse_model_option("dpo=runs/x/dpo").name, parse_model_option("default").name
    ('dpo', 'default')
    >>> parse_model_option("=x")
    Traceback (most recent call last):
    cai.core.errors.CaiError: --model '=x': empty name or path (fix: write NAME=PATH, e.g. base=default)
    """
    name, sep, path = item.partition("=")
    if not sep:
        path, name = item, Path(item.rstrip("/")).name or item
    if not name.strip() or not path.strip():
        raise CaiError(f"--model {item!r}: empty name or path", hint="write NAME=PATH, e.g. base=default")
    try:
        return EvalModel(name=name.strip(), model=path.strip())
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CaiError(f"--model {item!r}: {err['msg']}",
                       hint="names use letters, digits, '.', '_', '+' and '-'") from None


def field_of(message: str) -> tuple[str, ...]:
    """The spec field a whole-spec check's message starts with, to point at it; () when none.

    >>> field_of("baseline 'x' is not one of the models"), field_of("no prompt set")
    (('baseline',), ())
    """
    first = message.split(" ", 1)[0]
    return (first,) if first in EvalSpec.model_fields else ()


def load_spec(path: str | Path) -> EvalSpec:
    """Read a YAML spec; a bad field is one line ``file:line: field: message``."""
    from cai.core.yaml_lines import error_parts, located_error, parse_yaml, read_source, where

    p = Path(path)
    source = str(p)
    data, lines = parse_yaml(read_source(p, source), source)
    if not isinstance(data, dict):
        raise CaiError(f"{source}:1: an eval spec is a mapping",
                       hint="write `models: [...]` and the other keys")
    try:
        return EvalSpec.model_validate(data)
    except ValidationError as exc:
        loc, msg, others = error_parts(exc)
        loc = loc or field_of(msg)
        raise located_error(loc, msg, where(source, lines, loc), others) from None
