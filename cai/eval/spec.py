"""What to evaluate: the :class:`EvalSpec` that ``cai eval`` (options or ``--spec FILE``) and ``cai run``
build.

A spec names the models (each a name and a model path, hub id or ``default``),
the baseline the win rate and the KL are measured against, the feedback model
that judges, the prompt sets, and the extra inputs of the report (training
curves, the labeler audit, the judge and refusal-detector audits, a sample of the
training data, how many prompts per set to show side by side). It is plain data:
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

BackendKind = Literal["hf", "openai"]
Name = str


class EvalModel(BaseModel):
    """One model to evaluate: a short name for the report and where the model is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
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
    judge: Literal["rubric", "pairwise"] = "rubric"
    few_shot: bool = False  # pairwise harm judge: show the constitution's feedback examples first
    preference_model: Path | None = None  # a `cai train rm` dir, for the reward-hacking probes
    # prompt sets (JSONL, {"prompt": ...}); lookalike rows carry "label": safe|unsafe (XSTest format)
    redteam: Path | None = None
    lookalike: Path | None = None
    benign: Path | None = None
    limit: int | None = Field(None, ge=1)  # first N prompts of each set (lookalike: N safe and N unsafe)
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

    @field_validator("constitution", mode="before")
    @classmethod
    def _path_ok(cls, v: object) -> object:
        return str(v) if isinstance(v, Path) else v

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
        if self.redteam is None and self.lookalike is None and self.benign is None:
            raise ValueError("no prompt set: give at least one of redteam, lookalike, benign")
        if self.feedback_backend == "openai" and not self.feedback_base_urls:
            raise ValueError("feedback_backend openai needs feedback_base_urls")
        return self

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
                       hint="names use letters, digits, '.', '_' and '-'") from None


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
