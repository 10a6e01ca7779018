"""Trainer configs from a YAML file, ``--set KEY=VALUE`` overrides and explicit options.

Keys are the config dataclass's own field names (TRL's ``SFTConfig``,
``DPOConfig``... or any other dataclass), so a TRL recipe's YAML works as is.
Precedence, lowest first: ``defaults`` (cai's choices, e.g. ``report_to: none``),
the ``--config`` file, explicit CLI options the user passed, then ``--set``.
An unknown key is a one-line :class:`~cai.core.errors.CaiError` naming where it came
from and the closest valid key.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     learning_rate: float = 1e-3
...     max_steps: int = -1
...     report_to: str = "all"
>>> cfg = build_config(Demo, overrides=["learning_rate=5e-5"], options={"max_steps": 4},
...                    defaults={"report_to": "none"})
>>> cfg
Demo(learning_rate=5e-05, max_steps=4, report_to='none')
>>> build_config(Demo, overrides=["learning_rat=1"])  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
cai.core.errors.CaiError: --set learning_rat=1: unknown key 'learning_rat' for Demo (fix: did you mean
'learning_rate'?)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import enum
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cai.core.errors import CaiError

T = TypeVar("T")

# False inside `without_hardware()`: configs are built to check their keys, not to train on this machine
_HARDWARE = contextvars.ContextVar("cai_config_hardware", default=True)


@contextlib.contextmanager
def without_hardware() -> Iterator[None]:
    """Build configs as for another machine: keys and values are checked, this machine's hardware is not.

    ``cai run --dry-run`` validates a GPU recipe on a laptop this way: inside, a config is built with
    ``use_cpu`` (so ``bf16: true`` needs no bf16 GPU) and without ``tf32`` (checked against the GPU's
    architecture); a real run builds them as they are, and fails on this machine with one line.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class D:
    ...     use_cpu: bool = False
    ...     tf32: bool | None = None
    >>> with without_hardware():
    ...     build_config(D, options={"tf32": True})
    D(use_cpu=True, tf32=None)
    >>> build_config(D, options={"tf32": True})
    D(use_cpu=False, tf32=True)
    """
    token = _HARDWARE.set(False)
    try:
        yield
    finally:
        _HARDWARE.reset(token)


def field_names(cls: type) -> list[str]:
    """The keys a dataclass takes in its constructor.

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class D:
    ...     a: int = 1
    ...     b: int = field(default=2, init=False)
    >>> field_names(D)
    ['a']
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [f.name for f in dataclasses.fields(cls) if f.init]


def closest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key most like ``key`` (or None when nothing is close).

    >>> closest_key("learnig_rate", ["learning_rate", "max_steps"])
    'learning_rate'
    >>> closest_key("zzz", ["learning_rate"]) is None
    True
    """
    valid = list(valid)
    lowered = {v.lower(): v for v in valid}
    if key.lower() in lowered:
        return lowered[key.lower()]
    hits = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return hits[0] if hits else None


def parse_set(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value parsed as YAML (numbers, booleans, lists, null).

    >>> parse_set("beta=0.1"), parse_set("loss_type=[sigmoid, ipo]"), parse_set("run_name=a=b")
    (('beta', 0.1), ('loss_type', ['sigmoid', 'ipo']), ('run_name', 'a=b'))
    >>> parse_set("report_to=none"), parse_set("max_length=null")
    (('report_to', 'none'), ('max_length', None))
    >>> parse_set("beta")
    Traceback (most recent call last):
    cai.core.errors.CaiError: --set beta: expected KEY=VALUE (fix: e.g. --set learning_rate=1e-5)
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CaiError(f"--set {item}: expected KEY=VALUE", hint="e.g. --set learning_rate=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CaiError(f"--set {item}: value is not valid YAML: {first}", hint="quote it") from None
    return key, value


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping of config keys (an empty file is an empty mapping)."""
    p = Path(path)
    if not p.is_file():
        raise CaiError(f"{p}: no such config file", hint="pass a YAML file of the trainer's config keys")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaiError(f"{where}: not valid YAML: {problem}", hint="fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise CaiError(f"{p}: not UTF-8", hint="save the file as UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CaiError(f"{p}: expected a mapping of config keys, got {type(data).__name__}",
                       hint="write one `key: value` a line, e.g. `learning_rate: 1.0e-5`")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise CaiError(f"{p}: key {bad[0]!r} is not a string", hint="config keys are field names")
    return data


def _type_text(cls: type, key: str) -> str:
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return ""


def coerce_value(type_text: str, value: Any) -> Any:
    """Fix what YAML leaves as a string: ``1e-5`` is a str in YAML 1.1 but a float field wants a float.

    >>> coerce_value("float", "1e-5"), coerce_value("float | None", 3), coerce_value("int", "8")
    (1e-05, 3.0, 8)
    >>> coerce_value("str", "1e-5"), coerce_value("float", "abc"), coerce_value("bool", True)
    ('1e-5', 'abc', True)
    >>> coerce_value("SaveStrategy | str", False), coerce_value("bool | str", False)
    ('no', False)
    """
    t = type_text.replace("typing.", "").replace("Optional[", "")
    words = {w.strip("[]() ") for w in t.replace("|", ",").replace("Union[", "").split(",")}
    if isinstance(value, bool) and "str" in words and "bool" not in words:
        return "yes" if value else "no"  # YAML 1.1 read `no`/`yes` as booleans: save_strategy: no
    if "str" in words or isinstance(value, bool):
        return value
    if "float" in words and isinstance(value, (int, str)):
        try:
            return float(value)
        except ValueError:
            return value
    if "int" in words and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def build_config(
    cls: type[T],
    *,
    config_file: str | os.PathLike | None = None,
    overrides: Iterable[str] | None = None,
    options: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` (a config dataclass) from defaults < file < options < ``--set`` overrides.

    ``options`` holds only the options the user actually passed (``None`` values are
    dropped). Every key is checked against the dataclass's fields first.
    """
    valid = field_names(cls)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key not in valid:
            near = closest_key(key, valid)
            raise CaiError(f"{where}: unknown key {key!r} for {cls.__name__}",
                           hint=f"did you mean {near!r}?" if near else f"see the fields of {cls.__name__}")
        merged[key] = coerce_value(_type_text(cls, key), value)
        origin[key] = where

    for k, v in (defaults or {}).items():
        put(k, v, "cai default")
    if config_file is not None:
        for k, v in load_config_file(config_file).items():
            put(k, v, str(config_file))
    for k, v in (options or {}).items():
        if v is not None:
            put(k, v, f"option {k}")
    for item in overrides or ():
        k, v = parse_set(item)
        put(k, v, f"--set {item}")
    if not _HARDWARE.get():
        if "use_cpu" in valid:
            merged["use_cpu"] = True
        if isinstance(merged.get("tf32"), bool):
            merged.pop("tf32")
    try:
        return cls(**merged)
    except (TypeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        if "doesn't support bf16/gpu" in msg:  # transformers' check of this machine
            where = origin.get("bf16", "the config")
            raise CaiError(f"{cls.__name__}: bf16: true (from {where}) needs a GPU with bf16 (Ampere or "
                           "newer) and this machine has none",
                           hint="run on such a GPU, or set bf16: false; `cai run --dry-run` checks a recipe "
                                "without the hardware") from None
        keys = ", ".join(f"{k} (from {origin[k]})" for k in merged if k in msg) or "the config"
        raise CaiError(f"{cls.__name__}: {msg[:300]}", hint=f"check {keys}") from None


def training_defaults(cls: type, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """cai's defaults for a TrainingArguments-like config, only the keys ``cls`` has.

    No experiment tracker unless asked (``report_to: none``), no NaN filtering of
    logged losses (the guard must see them), and on a machine without a bf16 GPU:
    fp32 and no activation checkpointing (bf16 matmuls are ~500x slower on CPU);
    ``use_cpu`` in CPU processes started by ``accelerate launch``.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class D:
    ...     output_dir: str | None = None
    ...     report_to: str = "all"
    >>> training_defaults(D, "out")
    {'report_to': 'none', 'output_dir': 'out'}
    """
    wanted: dict[str, Any] = {"report_to": "none", "logging_nan_inf_filter": False}
    if output_dir is not None:
        wanted["output_dir"] = str(output_dir)
    if not _has_bf16_gpu():
        wanted.update(bf16=False, fp16=False, activation_checkpointing=False)
    if _cpu_processes() > 1:  # `accelerate launch` on CPU: use_cpu makes the Trainer join the gloo group
        wanted["use_cpu"] = True
    names = set(field_names(cls))
    return {k: v for k, v in wanted.items() if k in names}


def _cpu_processes() -> int:
    """The world size of a distributed launch on a machine without CUDA (1 otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 1
    import torch

    return 1 if torch.cuda.is_available() else world


def _has_bf16_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_to_dict(cfg: Any, *, only_changed: bool = False) -> dict[str, Any]:
    """A config dataclass as JSON-safe data, secrets (``*_token``) hidden.

    ``only_changed`` keeps only fields that differ from the class defaults.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class D:
    ...     beta: float = 0.1
    ...     hub_token: str | None = None
    ...     loss_type: tuple = ("sigmoid",)
    >>> config_to_dict(D(beta=0.2, hub_token="secret"))
    {'beta': 0.2, 'hub_token': '<hidden>', 'loss_type': ['sigmoid']}
    >>> config_to_dict(D(beta=0.2), only_changed=True)
    {'beta': 0.2}
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value = getattr(cfg, f.name, None)
        if only_changed and _plain(_field_default(f)) == _plain(value):
            continue
        if f.name.endswith("_token") and value is not None:
            value = "<hidden>"
        out[f.name] = _plain(value)
    json.dumps(out)  # must be JSON-safe
    return out
