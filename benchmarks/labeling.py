"""Labelling throughput of `cai label`'s feedback step on the `hf` backend: batched vs batch 1, reuse vs
naive.

Labels the same human pairs (hh-rlhf harmless dev pairs from the shared data,
multi-turn prompts, the shipped `harmless` constitution with its few-shot
examples, one principle per pair, both orders scored) three times in one run:

* the defaults: ``--pairs-per-call`` pairs per call, ``--batch-size`` chats per
  forward pass, prefix reuse on (`reuse_prefix=True`: the few-shot prefix all
  chats share is computed once and kept across calls, each chat's prompt runs
  once for both options);
* the same batching with a naive recompute per option (`reuse_prefix=False`);
* the batch-1 baseline: one pair per call, one chat per forward pass, reuse on.

Prints pairs per minute of each, the ratios, and the largest difference
between the soft labels of the reuse and naive runs (should be ~0).

Usage: python benchmarks/labeling.py [--model default] [--pairs 12] [--pairs-per-call 8] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "hh_harmless_pairs_dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--pairs", type=int, default=12, help="pairs labelled per setting")
    ap.add_argument("--pairs-file", type=Path, default=PAIRS)
    ap.add_argument("--pairs-per-call", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8, help="hf sequences per forward pass")
    ap.add_argument("--constitution", default="harmless")
    args = ap.parse_args()

    import torch

    from cai.backends.hf.backend import HFBackend
    from cai.constitution.load import load_constitution
    from cai.stages.label.labeler import LabelConfig, label_records
    from cai.stages.label.pairs import load_pairs_for_audit

    const = load_constitution(args.constitution)
    pairs = load_pairs_for_audit(args.pairs_file, args.pairs + 1)
    warm, pairs = pairs[:1], pairs[1:]
    shared = HFBackend(args.model, batch_size=args.batch_size, reuse_prefix=True)
    naive = HFBackend(args.model, batch_size=args.batch_size, reuse_prefix=False,
                      model_obj=shared.lm, tokenizer=shared.tokenizer)
    single = HFBackend(args.model, batch_size=1, model_obj=shared.lm, tokenizer=shared.tokenizer)
    config = LabelConfig(batch_size=args.pairs_per_call)
    print(f"model {args.model} on {shared.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {len(pairs)} pairs from {args.pairs_file.name}, both orders, "
          f"{len(const.feedback_examples)} few-shot example(s), pairs per call {args.pairs_per_call}, batch "
          f"{args.batch_size}")
    mean_tokens = sum(len(shared.render(_chat(p, const))) for p in pairs) / len(pairs)
    print(f"mean feedback prompt length: {mean_tokens:.0f} tokens")
    # warm-up; the prefix store then holds the few-shot prefix, as after a run's first call
    list(label_records(warm, shared, const, config))
    list(label_records(warm, single, const, LabelConfig(batch_size=1)))

    results = {}
    runs = (("reuse, batched", shared, config), ("naive, batched", naive, config),
            ("reuse, batch 1", single, LabelConfig(batch_size=1)))
    for name, be, cfg in runs:
        t = time.perf_counter()
        recs = list(label_records(pairs, be, const, cfg))
        elapsed = time.perf_counter() - t
        results[name] = (recs, elapsed)
        print(f"{name:>15}: {len(recs)} pairs in {elapsed:6.1f}s = {60 * len(recs) / elapsed:6.2f} pairs/min",
              flush=True)
    (r1, t1), (r2, t2), (_, t3) = results.values()
    diff = max(abs(a.p_a - b.p_a) for a, b in zip(r1, r2) if a.p_a is not None and b.p_a is not None)
    n = len(pairs)
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| pairs/min, {args.pairs_per_call} pairs per call, batch {args.batch_size}, prefix reuse | "
          f"{60 * n / t1:.2f} |")
    print(f"| pairs/min, same batching, naive recompute per option | {60 * n / t2:.2f} |")
    print(f"| pairs/min, batch 1 (1 pair per call, 1 chat per pass), prefix reuse | {60 * n / t3:.2f} |")
    print(f"| ratio reuse / naive (batched) | {t2 / t1:.2f}x (max p_a difference {diff:.1e}) |")
    print(f"| ratio batched / batch 1 | {t3 / t1:.2f}x |")
    print(f"| load average (1 min) at the end, {os.cpu_count()} cores | {os.getloadavg()[0]:.1f} |")


def _chat(pair, const):
    from cai.stages.label.feedback import feedback_chat, few_shot_turns

    p = const.principles[0]
    return feedback_chat(few_shot_turns(const, "score"), pair.prompt, const.comparison_for(p), pair.answer_a,
                         pair.answer_b, "score")


if __name__ == "__main__":
    main()
