"""Throughput of the whole critique/revision stage on the default model: batched vs one prompt at a time.

Runs :func:`cai.stages.critique.loop.critique_revise` over the same red-team prompts twice in
one process: all ``--prompts`` at ``--batch`` prompts advancing together (the CLI
default, 16), then the first ``--batch1-prompts`` of them one at a time, and prints
prompts per minute for each, their ratio, generated tokens per second, and how
many of the shared traces came out identical (they should all be: request seeds
do not depend on the batch).

Default run (16 prompts, 1 round, 64 new tokens, batch 1 on 4 of them): about
5 minutes on 2 idle CPU cores; much longer when the cores are shared.

``--levers`` reruns the batched run with the hf backend's shared-prefix reuse
off (``reuse_prefix=False``: the system prompt and few-shot turns every chat
starts with are recomputed for every chat) and prints that beside.

Usage: python benchmarks/critique.py [--model default] [--prompts 16] [--rounds 1]
       [--new-tokens 64] [--batch 16] [--batch1-prompts 4] [--constitution harmless] [--levers]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "redteam_prompts_dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompts", type=int, default=16, help="red-team prompts (from the shared dev set)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16, help="prompts that advance together (CLI default 16)")
    ap.add_argument("--batch1-prompts", type=int, default=4, help="how many of the prompts to run at batch 1")
    ap.add_argument("--constitution", default="harmless")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--levers", action="store_true", help="also run the batch with prefix reuse off")
    args = ap.parse_args()

    import torch

    from cai.backends.hf.backend import HFBackend
    from cai.constitution.load import load_constitution
    from cai.core.jsonl import read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.critique.loop import CritiqueConfig, critique_revise

    const = load_constitution(args.constitution)
    prompts = read_prompts(args.data)[: args.prompts]
    backend = HFBackend(args.model, batch_size=args.batch)
    print(f"model {args.model} on {backend.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {len(prompts)} prompts, {args.rounds} round(s), {args.new_tokens} new "
          f"tokens, constitution {const.name}; load average {os.getloadavg()[0]:.1f}", flush=True)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.95, seed=0)
    backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=4))  # warm-up

    def timed_run(batch: int, subset: list):
        backend.batch_size = batch
        config = CritiqueConfig(rounds=args.rounds, params=params, batch_size=batch)
        t = time.perf_counter()
        recs = list(critique_revise(subset, const, backend, config))
        took = time.perf_counter() - t
        print(f"batch {batch}: {len(subset)} prompts in {took:.1f} s", flush=True)
        return recs, took

    batched, tb = timed_run(args.batch, prompts)
    single, t1 = timed_run(1, prompts[: args.batch1_prompts])
    if args.levers:
        backend.reuse_prefix = False
        no_reuse, tn = timed_run(args.batch, prompts)
        backend.reuse_prefix = True

    def tokens(recs) -> int:
        return sum((r.answer_tokens or 0)
                   + sum((x.critique_tokens or 0) + (x.revision_tokens or 0) for x in r.rounds) for r in recs)

    def trace(r) -> str:
        return json.dumps([r.answer, [x.model_dump() for x in r.rounds]], sort_keys=True)

    same = sum(trace(a) == trace(b) for a, b in zip(batched, single))
    flagged = sum(bool(x.flags) for r in batched for x in r.rounds)
    n_rounds = sum(len(r.rounds) for r in batched)
    ppm_b, ppm_1 = 60 * len(batched) / tb, 60 * len(single) / t1
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| batch {args.batch}: wall time ({len(batched)} prompts) | {tb:.1f} s |")
    print(f"| batch {args.batch}: prompts per minute | {ppm_b:.2f} |")
    print(f"| batch {args.batch}: generated tokens/s | {tokens(batched) / tb:.1f} |")
    print(f"| batch 1: wall time ({len(single)} prompts) | {t1:.1f} s |")
    print(f"| batch 1: prompts per minute | {ppm_1:.2f} |")
    print(f"| batch 1: generated tokens/s | {tokens(single) / t1:.1f} |")
    print(f"| ratio batch {args.batch} / batch 1 (prompts per minute) | {ppm_b / ppm_1:.2f}x |")
    if args.levers:
        print(f"| batch {args.batch}, shared-prefix reuse off: prompts per minute | "
              f"{60 * len(no_reuse) / tn:.2f} |")
        print(f"| ratio reuse on / off | {tn / tb:.2f}x |")
        print(f"| traces identical with reuse off | "
              f"{sum(trace(a) == trace(b) for a, b in zip(batched, no_reuse))}/{len(batched)} |")
    print(f"| traces identical across the two runs | {same}/{len(single)} |")
    print(f"| revisions flagged (batch {args.batch} run) | {flagged}/{n_rounds} |")
    print(f"| load average (1 min) at the end, {os.cpu_count()} cores | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
