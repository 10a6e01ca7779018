"""A PPO run end to end: load, train, write metrics and samples as they come, save, model card.

Output directory:

* the policy (``config.json``, weights, tokenizer); under LoRA the merged model
  there and the adapter in ``adapter/``, as the other trainers save;
* ``value_head.safetensors``: the value head's weight and bias;
* ``metrics.jsonl``: one row per PPO step (``id`` ``step-000001``, ``step``,
  ``episodes``, ``reward``, ``kl``, ``entropy``, ``clipfrac``, ``value_loss``,
  ``answer_length``... see :data:`cai.train.ppo.trainer.METRIC_KEYS`), appended and
  fsync'd as each step ends;
* ``samples.jsonl``: ``log_samples`` answers per step as they were sampled
  (``step``, ``prompt``, ``completion``, ``finish_reason``, ``reward``, ``score``);
* ``checkpoint-N/`` every ``save_steps`` steps; ``ppo_config.json``;
* ``README.md`` + ``cai_card.json`` (:mod:`cai.train.common.cards`): base model,
  prompt files, the reward (and the preference model's data, constitutions and
  labeler audit when it has a card), the config and the final metrics.

A NaN/inf loss stops the run; the last finite weights and the card are saved
before :class:`~cai.train.common.guards.NonFiniteLossError` is raised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.core.jsonl import PathLike
from cai.core.records import ConstitutionRef, make_id
from cai.train.common.models import ModelOptions
from cai.train.common.runner import TrainResult
from cai.train.ppo.config import PPOConfig

log = logging.getLogger(__name__)


def read_prompt_chats(paths: Sequence[PathLike],
                      system_prompt: str | None = None) -> list[list[dict[str, str]]]:
    """Distinct prompts of prompt files (or SFT/preference records) as chats, in file order.

    ``system_prompt`` goes first unless a prompt has its own system turn.
    """
    from cai.core.jsonl import read_prompts
    from cai.core.records import to_chat
    from cai.stages.generate import build_chat

    seen: dict[str, list[dict[str, str]]] = {}
    for path in paths:
        for rec in read_prompts(path):
            chat = to_chat(build_chat(rec, system_prompt))
            seen.setdefault(make_id(chat), chat)
    return list(seen.values())


def save_policy(trainer: Any, out: Path) -> None:
    """Policy (merged under LoRA, adapter in ``adapter/``), tokenizer and value head; main process only."""
    import copy

    from safetensors.torch import save_file

    acc = trainer.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        model = trainer.unwrapped
        policy = model.policy
        if trainer.is_peft:
            policy.save_pretrained(str(out / "adapter"))
            copy.deepcopy(policy).merge_and_unload().save_pretrained(str(out))
        else:
            policy.save_pretrained(str(out))
        trainer.tokenizer.save_pretrained(str(out))
        head = {k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()}
        save_file(head, str(out / "value_head.safetensors"))
    acc.wait_for_everyone()


class StepWriter:
    """Appends each step's metrics row and a few sampled answers (main process), and reports to trackers."""

    def __init__(self, trainer: Any, out: Path, log_samples: int):
        from cai.core.jsonl import JsonlWriter

        self.trainer = trainer
        self.main = trainer.accelerator.is_main_process
        self.log_samples = log_samples
        self.metrics = JsonlWriter(out / "metrics.jsonl", resume=False) if self.main else None
        self.samples = JsonlWriter(out / "samples.jsonl", resume=False) if self.main and log_samples else None
        self.history: list[dict[str, Any]] = []

    def __call__(self, row: dict[str, Any], chats: list, rollout: Any, raw: Any) -> None:
        self.history.append(row)
        self.trainer.accelerator.log({f"ppo/{k}": v for k, v in row.items()}, step=row["step"])
        if not self.main:
            return
        self.metrics.write({"id": f"step-{row['step']:06d}", **row})
        if self.samples is None:
            return
        penalty = self.trainer.cfg.missing_eos_penalty or 0.0
        for i in range(min(self.log_samples, len(rollout))):
            eos = bool(rollout.has_eos[i])
            self.samples.write({
                "id": make_id("ppo-sample", row["step"], i), "step": row["step"], "prompt": chats[i],
                "completion": [{"role": "assistant", "content": rollout.texts[i]}],
                "finish_reason": "stop" if eos else "length",
                "completion_tokens": int(rollout.mask[i].sum()) - int(eos),
                "reward": float(raw[i]), "score": float(raw[i]) - (0.0 if eos else penalty),
            })

    def close(self) -> None:
        for w in (self.metrics, self.samples):
            if w is not None:
                w.close()


def reward_card_facts(reward: Any) -> tuple[list[str], dict[str, Any]]:
    """Data files of a preference-model reward that still exist (for the card) and the reward's
    description."""
    from cai.train.rewards import reward_description

    desc = reward_description(reward)
    files = [p for p in desc.get("card", {}).get("data", []) if isinstance(p, str) and Path(p).is_file()]
    return files, desc


def train_ppo(
    prompts: PathLike | Sequence[PathLike],
    *,
    reward: Any,
    output_dir: PathLike,
    model: str = "default",
    config: PPOConfig | None = None,
    options: ModelOptions = ModelOptions(),
    system_prompt: str | None = None,
    constitution: ConstitutionRef | None = None,
    reward_options: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` with PPO on the prompts of ``prompts`` against ``reward``; see the module doc for the
    outputs.

    ``reward`` is a ``(chats, texts) -> list[float]`` callable or a spec string for
    :func:`cai.train.rewards.make_reward` (built with ``reward_options`` once the
    prompts have been read). ``constitution`` (the one whose system prompt was
    used, if any) goes into the card.
    """
    from cai.train.common.cards import write_model_card
    from cai.train.common.config import config_to_dict
    from cai.train.common.data import as_paths
    from cai.train.common.guards import NonFiniteLossError
    from cai.train.common.models import load_causal_lm, load_tokenizer, lora_config
    from cai.train.common.runner import json_safe
    from cai.train.ppo.trainer import PPOTrainer

    cfg = config if config is not None else PPOConfig()
    cfg.output_dir = str(output_dir)
    out = Path(output_dir)
    paths = as_paths(prompts)
    chats = read_prompt_chats(paths, system_prompt)
    tok = load_tokenizer(model, chat_template=options.chat_template,
                         trust_remote_code=options.trust_remote_code, padding_side="left")
    if isinstance(reward, str):
        from cai.train.rewards import make_reward

        reward = make_reward(reward, tokenizer=tok, **(reward_options or {}))
    # fp32 master weights unless told otherwise: PPO's small updates vanish in bf16 weights (bf16 compute on a
    # GPU is the config's `bf16: true`, through accelerate's autocast).
    policy = load_causal_lm(model, dtype=options.dtype or "float32",
                            trust_remote_code=options.trust_remote_code)
    if options.lora is not None:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(options.lora, "CAUSAL_LM"))
    trainer = PPOTrainer(cfg, policy, tok, chats, reward)
    acc = trainer.accelerator
    rm_files, reward_desc = reward_card_facts(reward)
    log.info("PPO on %d prompt(s) from %s: model %s%s, reward %s, %d step(s) of %d answer(s) -> %s",
             len(chats), ", ".join(paths), model, " (LoRA)" if options.lora else "", reward_desc.get("repr"),
             trainer.num_steps, cfg.batch_size(acc.num_processes), out)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "ppo_config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n",
                                             encoding="utf-8")
    if cfg.report_to not in ("none", "", None):
        acc.init_trackers("cai-ppo", config=config_to_dict(cfg))
    writer = StepWriter(trainer, out, cfg.log_samples)

    def on_step(row: dict[str, Any], step_chats: list, rollout: Any, raw: Any) -> None:
        writer(row, step_chats, rollout, raw)
        if cfg.save_steps and row["step"] % cfg.save_steps == 0 and row["step"] < trainer.num_steps:
            save_policy(trainer, out / f"checkpoint-{row['step']}")

    stopped: NonFiniteLossError | None = None
    try:
        trainer.train(on_step)
    except NonFiniteLossError as exc:
        stopped = exc
        log.error("%s: saving the last finite weights to %s", exc, out)
    finally:
        writer.close()
    save_policy(trainer, out)
    history = writer.history
    metrics = dict(history[-1]) if history else {}
    if history:
        metrics.update(reward_first_step=history[0]["reward"], kl_max=max(r["kl"] for r in history))
    metrics = json_safe(metrics)
    card_path = None
    if acc.is_main_process:
        notes = {"reward": reward_desc, "lora": options.lora.__dict__ if options.lora else None,
                 "processes": acc.num_processes,
                 "value_function": "linear head on the policy's last hidden state (value_head.safetensors)"}
        if constitution is not None:
            notes["system_prompt_constitution"] = constitution.model_dump()
        if stopped is not None:
            notes["stopped"] = str(stopped)
        data_files = {"prompts": paths, **({"reward model preferences": rm_files} if rm_files else {})}
        card_path = write_model_card(out, trainer="ppo", base_model=model, data_files=data_files, config=cfg,
                                     metrics=metrics, audit=options.audit, notes=notes)
        log.info("saved the policy to %s (metrics %s, model card %s)", out, out / "metrics.jsonl", card_path)
    if cfg.report_to not in ("none", "", None):
        acc.end_training()
    if stopped is not None:
        raise NonFiniteLossError(f"{stopped.message}; the last finite weights are saved in {out}",
                                 hint=stopped.hint)
    return TrainResult(output_dir=out, metrics=metrics, card=card_path)
