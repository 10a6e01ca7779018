"""Labeller-shaped scoring on the `hf` backend: prefix reuse against a naive full recompute, default model.

The chats are the real feedback chats `cai label` sends: human pairs from the
shared hh-rlhf harmless dev set, the shipped `harmless` constitution's
few-shot examples as prior turns (a prefix of a few hundred tokens every chat
shares), one principle per pair, both orders (ab and ba), each scored with the
two one-token options ``A`` and ``B`` after ``The better response is (``.

Four ways, the same chats in one ``score`` call, at most ``--batch`` chats per
forward pass (the two orders of a pair together, the rest batched by length
with at most 10% padding on a CPU), in one run:

* naive: every option recomputes its whole chat (``reuse_prefix=False``):
  prompt + option per continuation, 2 forward rows per chat;
* per-chat: each chat's prompt once for both options (a one-token option is
  read off the prompt's last logits), no sharing across chats;
* shared prefix (the default): the same, plus the prefix all chats of a batch
  share (system prompt + few-shot turns) computed once and kept across calls;
* the default again without the padding limit (length-sorted batches of
  ``--batch``), to show what the limit buys.

Prints chats/s of each, the ratios to naive, and the largest difference in
log-probs between the fast and naive paths.

Usage: python benchmarks/scoring.py [--model default] [--pairs 12] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "data" / "hh_harmless_pairs_dev.jsonl"


def feedback_chats(pairs_file: Path, n: int, constitution: str = "harmless") -> list[list[dict[str, str]]]:
    """The ab and ba score chats of the first ``n`` pairs, under the constitution's first principle."""
    from cai.constitution.load import load_constitution
    from cai.stages.label.feedback import ORDERS, Ask, FeedbackReader
    from cai.stages.label.pairs import load_pairs_for_audit

    const = load_constitution(constitution)
    reader = FeedbackReader(backend=None, constitution=const)  # type: ignore[arg-type] - only builds chats
    principle = const.principles[0]
    chats = []
    for pair in load_pairs_for_audit(pairs_file, n):
        ask = Ask(pair.prompt, pair.answer_a, pair.answer_b, [principle])
        chats.extend(reader.chat(ask, principle, order, "score") for order in ORDERS)
    return chats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--pairs", type=int, default=12, help="pairs (2 chats each, both orders)")
    ap.add_argument("--pairs-file", type=Path, default=PAIRS)
    ap.add_argument("--batch", type=int, default=8,
                    help="chats per forward pass (the CLI's --feedback-batch-size)")
    args = ap.parse_args()

    import torch

    from cai.backends.hf.backend import HFBackend
    from cai.backends.hf.prefix_cache import batch_shared_len
    from cai.stages.label.feedback import OPTIONS

    backend = HFBackend(args.model, batch_size=args.batch)
    chats = feedback_chats(args.pairs_file, args.pairs)
    conts = [list(OPTIONS)] * len(chats)
    lengths = [len(backend.render(c)) for c in chats]
    shared = batch_shared_len([backend.render(c) for c in chats])
    print(f"model {args.model} on {backend.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.1f}; {len(chats)} chats ({args.pairs} "
          f"pairs x 2 orders), {sum(lengths) / len(lengths):.0f} tokens on average, {shared} shared by all; "
          f"batch {args.batch}",
          flush=True)

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    backend.score(chats[:2], conts[:2])  # warm-up (also fills the prefix store, as a previous call would)
    fast, t_fast = timed(lambda: backend.score(chats, conts))
    backend.max_padding = 1.0  # fixed batches of --batch (length-sorted), however much padding
    _, t_wide = timed(lambda: backend.score(chats, conts))
    backend.max_padding = None
    backend.prefix_store = lambda: None  # each chat's prompt once, nothing kept or shared across chats
    chat_once, t_chat = timed(lambda: backend.score(chats, conts))
    del backend.prefix_store
    backend.reuse_prefix = False
    naive, t_naive = timed(lambda: backend.score(chats, conts))
    diff = max(abs(a - b) for x, y in zip(fast, naive) for a, b in zip(x, y))
    diff_chat = max(abs(a - b) for x, y in zip(chat_once, naive) for a, b in zip(x, y))

    n = len(chats)
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| naive recompute per option | {n / t_naive:.2f} chats/s |")
    print(f"| each chat's prompt once (no cross-chat sharing) | {n / t_chat:.2f} chats/s |")
    print(f"| shared prefix + each chat once (default) | {n / t_fast:.2f} chats/s |")
    print(f"| the same, other chats in length-sorted batches of {args.batch} (no padding limit) | "
          f"{n / t_wide:.2f} chats/s |")
    print(f"| ratio per-chat / naive | {t_naive / t_chat:.2f}x (max diff {diff_chat:.1e} nats) |")
    print(f"| ratio shared prefix / naive | {t_naive / t_fast:.2f}x (max diff {diff:.1e} nats) |")
    print(f"| ratio padding limit / none | {t_wide / t_fast:.2f}x |")
    print(f"| load average (1 min) at the end, {os.cpu_count()} cores | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
