"""A training job runs the same call in process and as the `cai train` command line it renders (accelerate's
path)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cai.train.common.config import config_to_dict
from cai.train.common.models import LoraOptions, ModelOptions
from cai.train.jobs import TrainJob, job_argv, run_job

TRAINERS = {"sft": ("cai.train.sft", "train_sft"), "rm": ("cai.train.reward_model", "train_reward_model"),
            "dpo": ("cai.train.dpo", "train_dpo"), "ppo": ("cai.train.ppo.run", "train_ppo"),
            "rloo": ("cai.train.rl", "train_rl"), "grpo": ("cai.train.rl", "train_rl")}

LORA = ModelOptions(lora=LoraOptions(r=4, alpha=8, dropout=0.0, target_modules=("q_proj",)), dtype="float32",
                    trust_remote_code=True, chat_template="tmpl.jinja", audit="audit.json")

JOBS = {
    "sft": TrainJob("sft", ("a.jsonl", "b.jsonl"), "out", model="m",
                    settings={"learning_rate": 1e-4, "max_steps": 2},
                    options=ModelOptions(resume=True), args={"eval_fraction": 0.2}),
    "rm": TrainJob("rm", ("p.jsonl",), "out", model="m", settings={"max_length": 64}, options=LORA,
                   args={"pad_token": "<pad>", "margin": 0.5, "eval_fraction": 0.2, "human_eval": "h.jsonl"}),
    "dpo": TrainJob("dpo", ("p.jsonl",), "out", model="m", settings={"beta": 0.2, "loss_type": ["sigmoid"]},
                    options=LORA, args={"ref_model": "ref", "soft_labels": True, "eval_fraction": 0.1}),
    "ppo": TrainJob("ppo", ("q.jsonl",), "out", model="m", settings={"kl_coef": 0.1, "max_steps": 2},
                    options=LORA, args={"reward": "toy:token=fox", "constitution": "harmless",
                                        "judge_question": "Is it kind?", "reward_batch_size": 3}),
    "rloo": TrainJob("rloo", ("q.jsonl",), "out", model="m", settings={"beta": 0.05}, options=LORA,
                     args={"reward": ["toy:token=fox", "toy:contains=hi"], "judge_question": "Q?",
                           "reward_batch_size": 2}),
    "grpo": TrainJob("grpo", ("q.jsonl",), "out", model="m", settings={"num_generations": 2}, options=LORA,
                     args={"reward": ["toy:token=fox"], "judge_question": None, "reward_batch_size": 4}),
}


def recorded_call(monkeypatch, method: str, run) -> dict:
    """The keyword arguments the method's train function receives when ``run()`` runs (config as a dict)."""
    import importlib

    module, name = TRAINERS[method]
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, {k: (config_to_dict(v) if k == "config" else v) for k, v in kwargs.items()}))

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    run()
    assert len(calls) == 1
    return {"args": calls[0][0], **calls[0][1]}


@pytest.mark.parametrize("method", sorted(JOBS))
def test_the_command_line_makes_the_same_call_as_the_job(method, monkeypatch, tmp_path):
    from cai.cli import app

    monkeypatch.chdir(tmp_path)
    job = JOBS[method]
    direct = recorded_call(monkeypatch, method, lambda: run_job(job))

    def via_cli():
        r = CliRunner().invoke(app, job_argv(job))
        assert r.exit_code == 0, r.output

    assert recorded_call(monkeypatch, method, via_cli) == direct


def test_job_argv_names_every_argument_and_option():
    argv = job_argv(JOBS["rm"])
    for flag in ("--pad-token", "--margin", "--eval-fraction", "--human-eval", "--lora", "--lora-target",
                 "--dtype", "--trust-remote-code", "--chat-template", "--audit", "--set"):
        assert flag in argv
    assert "--resume" in job_argv(JOBS["sft"]) and "--prompts" in job_argv(JOBS["ppo"])
