"""DPO on CPU: tokens per second with precomputed reference log-probs vs without, default model.

Trains TRL's ``DPOTrainer`` (cai's default config: fp32, no tracker) twice in
one process on the same pairs from the shared hh-rlhf harmless dev set:

* ``precompute_ref_log_probs=False`` (TRL's default): every training step also
  runs the reference model (a frozen copy of the policy) on the batch;
* ``precompute_ref_log_probs=True``: one no-grad pass over the data before
  training computes the reference log-probs; steps then run the policy only,
  and no reference copy is kept in memory.

Times trainer construction (where TRL runs the precompute pass) plus
``train()``, and counts the tokens of every chosen and rejected sequence per
epoch (prompt + answer, truncated at ``--max-length``). The saving grows with
``--epochs``: the reference pass is done once instead of once per epoch.

Usage: python benchmarks/dpo_precompute.py [--pairs 16] [--epochs 2] [--batch 4] [--max-length 256]
       [--precompute-first]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "hh_harmless_pairs_dev.jsonl"


def sequence_tokens(dataset, max_length: int) -> int:
    """Tokens in one epoch: prompt + chosen and prompt + rejected per row, each capped at ``max_length``.

    >>> sequence_tokens([{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5, 6]}], 4)
    7
    """
    total = 0
    for row in dataset:
        p = len(row["prompt_ids"])
        total += min(p + len(row["chosen_ids"]), max_length) + min(p + len(row["rejected_ids"]), max_length)
    return total


def run(pairs_file: Path, out: Path, precompute: bool, args) -> tuple[int, float, float]:
    """One training run: (tokens per epoch, construct seconds, train seconds)."""
    from trl import DPOTrainer

    from cai.train.common.data import preference_datasets
    from cai.train.common.models import load_causal_lm, load_tokenizer
    from cai.train.dpo import default_dpo_config

    cfg = default_dpo_config(out, max_length=args.max_length, per_device_train_batch_size=args.batch,
                             num_train_epochs=args.epochs, precompute_ref_log_probs=precompute,
                             save_strategy="no", logging_steps=1, seed=0)
    train, _ = preference_datasets(pairs_file)
    tok = load_tokenizer(args.model)
    policy = load_causal_lm(args.model)
    t = time.perf_counter()
    trainer = DPOTrainer(model=policy, ref_model=None, args=cfg, train_dataset=train, processing_class=tok)
    built = time.perf_counter() - t
    tokens = sequence_tokens(trainer.train_dataset, args.max_length)
    t = time.perf_counter()
    trainer.train()
    return tokens, built, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--precompute-first", action="store_true", help="run the precomputed setting first")
    args = ap.parse_args()

    import torch

    print(f"model {args.model}, {torch.get_num_threads()} threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}; {args.pairs} pairs, {args.epochs} epoch(s), batch {args.batch}, "
          f"max length {args.max_length}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.jsonl"
        lines = PAIRS.read_text().splitlines()[: args.pairs]
        pairs_file.write_text("\n".join(json.dumps(json.loads(x)) for x in lines) + "\n")
        for precompute in ((True, False) if args.precompute_first else (False, True)):
            tokens, built, trained = run(pairs_file, Path(tmp) / f"out-{precompute}", precompute, args)
            results[precompute] = (tokens * args.epochs, built + trained)
            print(f"precompute={precompute}: {tokens * args.epochs} tokens, construct {built:.1f} s "
                  f"+ train {trained:.1f} s", flush=True)
    (tok_off, t_off), (tok_on, t_on) = results[False], results[True]
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| DPO tokens/s, reference model run every step | {tok_off / t_off:.1f} |")
    print(f"| DPO tokens/s, reference log-probs precomputed (pass included) | {tok_on / t_on:.1f} |")
    print(f"| ratio precomputed / every step | {t_off / t_on:.2f}x |")
    print(f"| load average (1 min) at the end, {os.cpu_count()} cores | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
