"""Multiple-choice benchmark scoring (TruthfulQA, BBQ) on the `hf` backend: prefix reuse against a naive
full recompute, default model.

The rows are the first ``--truthfulqa`` questions of the shared TruthfulQA dev set and the first ``--bbq``
rows of the shared BBQ dev set, scored exactly as ``cai eval --truthfulqa/--bbq`` scores them
(:mod:`cai.eval.choices`: the harness's prompt as a continued assistant turn, every answer a continuation,
the same rows per ``score`` call):

* TruthfulQA: every prompt starts with the six-shot preamble (~240 tokens after the chat template's
  header); each question has ~7 answers;
* BBQ: the four rows of one context (two polarities, with and without the disambiguating sentence) share
  the context; each row has three short answers.

Two ways, in one run, the same rows and calls:

* naive: ``reuse_prefix=False``: every answer recomputes its whole prompt (prompt + answer per row);
* shared prefix (the default): each prompt once for all its answers, the prefix a batch shares computed
  once and kept across calls.

Prints questions/s of each, the ratio, and the largest difference in log-probs between the two paths.

Usage: python benchmarks/eval_mc.py [--model default] [--truthfulqa 8] [--bbq 32]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def task_items(task: str, n: int) -> list:
    """The first ``n`` rows of the task's shared dev file, as scored by the eval."""
    from cai.eval.bbq import BBQRow
    from cai.eval.choices import read_rows
    from cai.eval.multiple_choice import items
    from cai.eval.truthfulqa import TruthfulQARow

    model, name = ((TruthfulQARow, "truthfulqa_dev.jsonl") if task == "truthfulqa"
                   else (BBQRow, "bbq_dev.jsonl"))
    return items(task, read_rows(DATA / name, model, limit=n))


def timed(backend, items: list, chunk: int) -> tuple[float, list[list[float]]]:
    """Seconds to score every item, ``chunk`` rows per call (as the eval does), and the scores."""
    from cai.eval.choices import continue_chat

    t0 = time.perf_counter()
    scores: list[list[float]] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        scores += backend.score([continue_chat(it.prompt) for it in part], [list(it.choices) for it in part])
    return time.perf_counter() - t0, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--truthfulqa", type=int, default=8, help="TruthfulQA questions")
    ap.add_argument("--bbq", type=int, default=32, help="BBQ rows")
    ap.add_argument("--batch", type=int, default=64,
                    help="prompts per forward pass (cai eval's --batch-size)")
    args = ap.parse_args()

    import torch

    from cai.backends.hf.backend import HFBackend
    from cai.eval.choices import continue_chat
    from cai.eval.multiple_choice import CHUNKS

    backend = HFBackend(args.model, batch_size=args.batch)
    print(f"model {args.model} on {backend.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.1f}; batch {args.batch}", flush=True)
    print("| task | rows | tokens/prompt | answers/row | naive rows/s | shared-prefix rows/s | ratio "
          "| max diff |")
    print("|---|---|---|---|---|---|---|---|")
    for task, n in (("truthfulqa", args.truthfulqa), ("bbq", args.bbq)):
        if n <= 0:
            continue
        items = task_items(task, n)
        tokens = sum(len(backend.render(continue_chat(it.prompt))) for it in items) / len(items)
        answers = sum(len(it.choices) for it in items) / len(items)
        backend.reuse_prefix, backend._store = True, None  # a cold prefix store: the first call computes it
        fast_s, fast = timed(backend, items, CHUNKS[task])
        backend.reuse_prefix = False
        slow_s, slow = timed(backend, items, CHUNKS[task])
        diff = max(abs(a - b) for fa, sa in zip(fast, slow) for a, b in zip(fa, sa))
        print(f"| {task} | {len(items)} | {tokens:.0f} | {answers:.1f} | {len(items) / slow_s:.3f} | "
              f"{len(items) / fast_s:.3f} | {slow_s / fast_s:.2f}x | {diff:.1e} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
