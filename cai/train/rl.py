"""Online RL from AI feedback with TRL's RLOOTrainer and GRPOTrainer.

The policy samples answers to the prompts; a reward from
:mod:`cai.train.rewards` scores them: the preference model written by
``cai train rm`` (``rm:PATH``), a feedback model asked a Yes/No rubric question
(``judge:MODEL``), or a toy reward for tests. Several rewards may be given (TRL
sums them, weighted by ``reward_weights``). Every ``RLOOConfig``/``GRPOConfig``
key passes through (``num_generations``, ``max_completion_length``, ``beta``...).

Generation on vLLM is TRL's own: ``use_vllm: true`` with ``vllm_mode: colocate`` (vLLM in
each training process, sharing its GPU: ``vllm_gpu_memory_utilization``,
``vllm_tensor_parallel_size``) or ``vllm_mode: server`` (a ``trl vllm-serve`` process:
``vllm_server_base_url``, or ``vllm_server_host``/``vllm_server_port``). Building the
config never imports vllm (a recipe validates anywhere); a run without the package
stops at the start with one line (:func:`check_vllm`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cai.core.errors import CaiError
from cai.core.jsonl import PathLike
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult

log = logging.getLogger(__name__)

ALGORITHMS = ("rloo", "grpo")


def rl_classes(algorithm: str) -> tuple[Any, Any]:
    if algorithm == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOConfig, RLOOTrainer
    if algorithm == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOConfig, GRPOTrainer
    raise CaiError(f"unknown RL algorithm {algorithm!r}", hint=f"use one of {', '.join(ALGORITHMS)}")


def default_rl_config(algorithm: str, output_dir: PathLike, **options: Any) -> Any:
    """An ``RLOOConfig`` or ``GRPOConfig`` with cai's defaults and ``options``."""
    from cai.train.common.config import build_config, training_defaults

    config_cls, _ = rl_classes(algorithm)
    return build_config(config_cls, options=options, defaults=training_defaults(config_cls, output_dir))


def check_batch(cfg: Any, world_size: int = 1) -> None:
    """Refuse a batch that TRL cannot split into whole groups of ``num_generations`` answers.

    >>> from types import SimpleNamespace as NS
    >>> check_batch(NS(per_device_train_batch_size=4, gradient_accumulation_steps=1,
    ...                steps_per_generation=None, generation_batch_size=None, num_generations=2))
    >>> check_batch(NS(per_device_train_batch_size=3, gradient_accumulation_steps=1,
    ...                steps_per_generation=None, generation_batch_size=None,
    ...                num_generations=2))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: a generation batch of 3 answers is not a whole number of groups of
    num_generations=2 (fix: make per_device_train_batch_size x gradient_accumulation_steps x processes a
    multiple of num_generations)
    """
    if not cfg.num_generations:
        return
    steps = cfg.steps_per_generation or cfg.gradient_accumulation_steps
    batch = cfg.generation_batch_size or cfg.per_device_train_batch_size * world_size * steps
    if batch % cfg.num_generations:
        raise CaiError(f"a generation batch of {batch} answers is not a whole number of groups of "
                       f"num_generations={cfg.num_generations}",
                       hint="make per_device_train_batch_size x gradient_accumulation_steps x processes "
                            "a multiple of num_generations")


VLLM_MODES = ("colocate", "server")


def check_vllm_settings(cfg: Any) -> None:
    """Refuse vLLM settings that contradict each other (checked when a recipe is validated; needs no vllm).

    >>> from types import SimpleNamespace as NS
    >>> check_vllm_settings(NS(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://h:8000"))
    >>> check_vllm_settings(NS(use_vllm=True, vllm_mode="remote",
    ...                        vllm_server_base_url=None))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: vllm_mode 'remote' is not colocate or server (fix: vllm_mode: colocate (vLLM
    in the training processes) or server (a `trl vllm-serve` process))
    >>> check_vllm_settings(NS(use_vllm=True, vllm_mode="colocate",
    ...                        vllm_server_base_url="http://h:8000"))  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: vllm_server_base_url is set but vllm_mode is colocate, which starts its own
    vLLM and ignores it (fix: set vllm_mode: server to use that server)
    """
    if not getattr(cfg, "use_vllm", False):
        return
    mode = getattr(cfg, "vllm_mode", "colocate")
    if mode not in VLLM_MODES:
        raise CaiError(f"vllm_mode {mode!r} is not colocate or server",
                       hint="vllm_mode: colocate (vLLM in the training processes) or server (a `trl "
                            "vllm-serve` process)")
    if mode == "colocate" and getattr(cfg, "vllm_server_base_url", None):
        raise CaiError("vllm_server_base_url is set but vllm_mode is colocate, which starts its own vLLM and "
                       "ignores it", hint="set vllm_mode: server to use that server")


def check_vllm(cfg: Any, available: bool | None = None, cuda: bool | None = None) -> None:
    """At the start of training: ``use_vllm`` needs the vllm package, and colocate mode a CUDA GPU.

    >>> from types import SimpleNamespace as NS
    >>> check_vllm(NS(use_vllm=False), available=False)
    >>> check_vllm(NS(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://h:8000"),
    ...            available=False)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    cai.core.errors.CaiError: use_vllm: true (vllm_mode server) needs the vllm package, which is not installed
    here (fix: pip install vllm on a CUDA machine (TRL's extra: trl[vllm]), or set use_vllm: false to sample
    with transformers)
    """
    if not getattr(cfg, "use_vllm", False):
        return
    check_vllm_settings(cfg)
    mode = getattr(cfg, "vllm_mode", "colocate")
    if available is None:
        import importlib.util

        available = importlib.util.find_spec("vllm") is not None
    if not available:
        raise CaiError(f"use_vllm: true (vllm_mode {mode}) needs the vllm package, which is not installed "
                       "here",
                       hint="pip install vllm on a CUDA machine (TRL's extra: trl[vllm]), or set "
                            "use_vllm: false to sample with transformers")
    if mode == "colocate":
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        if not cuda:
            raise CaiError("use_vllm: true with vllm_mode colocate runs vLLM on this process's GPU, and none "
                           "is visible", hint="run on CUDA GPUs, or use vllm_mode: server with a "
                                              "`trl vllm-serve` on a GPU machine")


def build_rewards(specs: Sequence[str | Callable], tokenizer: Any, *, device: str | None = None,
                  batch_size: int = 8,
                  judge_question: str | None = None) -> tuple[list[Callable], list[dict]]:
    """TRL reward functions (and their descriptions for the card) from spec strings or reward callables."""
    from cai.train.rewards import DEFAULT_JUDGE_QUESTION, as_trl_reward, make_reward, reward_description

    if not specs:
        raise CaiError("no reward given",
                       hint="pass --reward rm:PATH (a `cai train rm` output) or judge:MODEL")
    fns, described = [], []
    for spec in specs:
        fn = spec if callable(spec) else make_reward(
            spec, tokenizer=tokenizer, device=device, batch_size=batch_size,
            judge_question=judge_question or DEFAULT_JUDGE_QUESTION)
        fns.append(as_trl_reward(fn))
        described.append(reward_description(fn))
    return fns, described


def train_rl(
    algorithm: str,
    prompts: PathLike | Sequence[PathLike],
    *,
    rewards: Sequence[str | Callable],
    output_dir: PathLike,
    model: str = "default",
    config: Any = None,
    options: ModelOptions = ModelOptions(),
    judge_question: str | None = None,
    reward_batch_size: int = 8,
) -> TrainResult:
    """Train ``model`` with RLOO or GRPO on the prompts of ``prompts`` against ``rewards``.

    ``rewards`` holds spec strings for :func:`cai.train.rewards.make_reward`
    (``rm:PATH``, ``judge:MODEL``, ``toy:...``) or ready ``(chats, texts) -> floats`` callables.
    """
    from cai.train.common.data import as_paths, prompt_dataset
    from cai.train.common.guards import NonFiniteGuard
    from cai.train.common.models import load_causal_lm, load_tokenizer, lora_config
    from cai.train.common.runner import run_and_save

    _, trainer_cls = rl_classes(algorithm)
    cfg = config if config is not None else default_rl_config(algorithm, output_dir)
    cfg.output_dir = str(output_dir)
    check_vllm(cfg)  # before any model loads
    dataset = prompt_dataset(prompts)
    tok = load_tokenizer(model, chat_template=options.chat_template,
                         trust_remote_code=options.trust_remote_code)
    policy = load_causal_lm(model, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    reward_fns, described = build_rewards(rewards, tok, batch_size=reward_batch_size,
                                          judge_question=judge_question)
    check_batch(cfg, cfg.world_size)
    guard = NonFiniteGuard()
    trainer = trainer_cls(
        model=policy, reward_funcs=reward_fns, args=cfg, train_dataset=dataset, processing_class=tok,
        peft_config=lora_config(options.lora, "CAUSAL_LM"), callbacks=[guard],
    )
    log.info("%s on %d prompt(s) from %s: %s, reward %s -> %s", algorithm.upper(), len(dataset),
             ", ".join(as_paths(prompts)), model, " + ".join(d["kind"] for d in described), output_dir)
    return run_and_save(
        trainer, guard, output_dir=output_dir, resume=options.resume,
        card={"trainer": algorithm, "base_model": model, "data_files": {"prompts": as_paths(prompts)},
              "audit": options.audit,
              "notes": {"rewards": described, "lora": options.lora.__dict__ if options.lora else None}},
    )
