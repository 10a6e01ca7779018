"""`cai train ...`: SFT, preference model, DPO, PPO, RLOO and GRPO.

Each trainer's command lives in its own module; this one only groups them.
"""

from __future__ import annotations

import typer

from cai.cli import train_dpo, train_ppo, train_rl, train_rm, train_sft

app = typer.Typer(help="Train on the SFT set and on AI/human preferences.", no_args_is_help=True)
app.command("sft")(train_sft.sft)
app.command("rm")(train_rm.rm)
app.command("dpo")(train_dpo.dpo)
app.command("ppo")(train_ppo.ppo)
app.command("rloo")(train_rl.rloo)
app.command("grpo")(train_rl.grpo)
