"""Labelling throughput of `cai label`'s feedback step on the `hf` backend, with and without prefix reuse.

Labels the same human pairs (hh-rlhf harmless dev pairs from the shared data,
multi-turn prompts, the shipped `harmless` constitution with its few-shot
examples, one principle per pair, both orders scored) twice in one run: with the
hf backend's shared-prefix KV reuse (`reuse_prefix=True`, the default: each
chat's prompt is computed once for both options) and with a naive recompute
per option (`reuse_prefix=False`). Prints pairs per minute of each, their ratio,
and the largest difference between the two runs' soft labels (should be ~0).

Usage: python benchmarks/labeling.py [--model default] [--pairs 12] [--pairs-per-call 8] [--batch-size 8]
"""

from __future__ import annotations

import argparse
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

    from cai.backends.hf import HFBackend
    from cai.constitution import load_constitution
    from cai.label import LabelConfig, label_records, load_pairs_for_audit

    const = load_constitution(args.constitution)
    pairs = load_pairs_for_audit(args.pairs_file, args.pairs + 1)
    warm, pairs = pairs[:1], pairs[1:]
    shared = HFBackend(args.model, batch_size=args.batch_size, reuse_prefix=True)
    naive = HFBackend(args.model, batch_size=args.batch_size, reuse_prefix=False,
                      model_obj=shared.lm, tokenizer=shared.tokenizer)
    config = LabelConfig(batch_size=args.pairs_per_call)
    print(f"model {args.model} on {shared.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{len(pairs)} pairs from {args.pairs_file.name}, both orders, {len(const.feedback_examples)} few-shot "
          f"example(s), pairs per call {args.pairs_per_call}, batch {args.batch_size}")
    mean_tokens = sum(len(shared.render(_chat(p, const))) for p in pairs) / len(pairs)
    print(f"mean feedback prompt length: {mean_tokens:.0f} tokens")
    list(label_records(warm, shared, const, config))

    results = {}
    for name, be in (("shared-prefix reuse", shared), ("naive recompute", naive)):
        t = time.perf_counter()
        recs = list(label_records(pairs, be, const, config))
        elapsed = time.perf_counter() - t
        results[name] = (recs, elapsed)
        print(f"{name:>20}: {len(recs)} pairs in {elapsed:6.1f}s = {60 * len(recs) / elapsed:6.2f} pairs/min")
    (r1, t1), (r2, t2) = results.values()
    diff = max(abs(a.p_a - b.p_a) for a, b in zip(r1, r2) if a.p_a is not None and b.p_a is not None)
    print(f"ratio reuse / naive: {t2 / t1:.2f}x; max |p_a difference| between the two: {diff:.2e}")


def _chat(pair, const):
    from cai.feedback import feedback_chat, few_shot_turns

    p = const.principles[0]
    return feedback_chat(few_shot_turns(const, "score"), pair.prompt, const.comparison_for(p), pair.answer_a,
                         pair.answer_b, "score")


if __name__ == "__main__":
    main()
