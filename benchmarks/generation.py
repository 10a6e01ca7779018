"""Generation and scoring throughput of the `hf` backend on the default model.

Prints, from one run on this machine:
  * generated tokens/s at batch 1 and at batch 32 (128 new tokens, greedy), and
    plain ``model.generate`` at batch 32 on the same prompts, as ratios;
  * scoring prompts/s for labeler-style prompts (a shared prefix of a few hundred
    tokens, two short option continuations) with and without shared-prefix reuse.

Usage: python benchmarks/generation.py [--model default] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_prompts(n: int) -> list[str]:
    rows = []
    for name in ("benign", "redteam"):
        for line in (ROOT / "examples" / "prompts" / f"{name}.jsonl").read_text().splitlines():
            p = json.loads(line)["prompt"]
            if isinstance(p, str):
                rows.append(p)
    return (rows * (n // len(rows) + 1))[:n]


def labeler_chat(question: str, a: str, b: str) -> list[dict[str, str]]:
    body = (
        f"Consider this conversation.\n\nUser: {question}\n\n"
        "Which of these assistant responses is less harmful and more helpful? "
        "Prefer an answer that explains its reasons and offers a safe alternative.\n\n"
        f"Options:\n(A) {a}\n(B) {b}\n\nAnswer with (A) or (B)."
    )
    return [{"role": "user", "content": body}, {"role": "assistant", "content": "The better response is "}]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batch1-prompts", type=int, default=6)
    ap.add_argument("--score-prompts", type=int, default=32)
    args = ap.parse_args()

    import torch

    from cai.backends.hf import HFBackend
    from cai.records import SamplingParams

    backend = HFBackend(args.model, batch_size=args.batch)
    tok, lm = backend.tokenizer, backend.lm
    print(f"model {args.model} on {backend.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
    chats = [[{"role": "user", "content": p}] for p in load_prompts(args.batch)]

    # warm-up
    backend.generate(chats[:2], SamplingParams(max_new_tokens=4))

    backend.batch_size = 1
    gens1, t1 = timed(lambda: backend.generate(chats[: args.batch1_prompts], params))
    tps1 = sum(g.completion_tokens for g in gens1) / t1
    backend.batch_size = args.batch
    gensb, tb = timed(lambda: backend.generate(chats, params))
    tpsb = sum(g.completion_tokens for g in gensb) / tb

    # plain model.generate on the same prompts, one left-padded batch
    enc = tok.apply_chat_template(chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True)
    with torch.inference_mode():
        out, tp = timed(lambda: lm.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id))
    new = out[:, enc["input_ids"].shape[1]:]
    eos = backend.eos_ids
    plain_tokens = 0
    for row in new.tolist():
        for t in row:
            if t in eos:
                break
            plain_tokens += 1
    tpsp = plain_tokens / tp
    same = sum(g.text == tok.decode(r[: len(tok(g.text, add_special_tokens=False)['input_ids'])], skip_special_tokens=True)
               for g, r in zip(gensb, new.tolist()))

    # scoring
    qs = load_prompts(args.score_prompts)
    score_chats = [labeler_chat(q, g.text[:600], gensb[(i + 1) % len(gensb)].text[:600]) for i, (q, g) in enumerate(zip(qs, gensb * 4))]
    prefix_tokens = sum(len(backend.render(c)) for c in score_chats) / len(score_chats)
    conts = [["(A)", "(B)"] for _ in score_chats]
    backend.batch_size = 8
    backend.reuse_prefix = True
    backend.score(score_chats[:2], conts[:2])
    shared, ts = timed(lambda: backend.score(score_chats, conts))
    backend.reuse_prefix = False
    naive, tn = timed(lambda: backend.score(score_chats, conts))
    maxdiff = max(abs(a - b) for x, y in zip(shared, naive) for a, b in zip(x, y))

    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| hf generate, batch 1, {args.new_tokens} new tokens | {tps1:.1f} tok/s |")
    print(f"| hf generate, batch {args.batch}, {args.new_tokens} new tokens | {tpsb:.1f} tok/s |")
    print(f"| plain model.generate, batch {args.batch} | {tpsp:.1f} tok/s |")
    print(f"| ratio hf batch {args.batch} / hf batch 1 | {tpsb / tps1:.2f}x |")
    print(f"| ratio hf batch {args.batch} / plain model.generate batch {args.batch} | {tpsb / tpsp:.2f}x |")
    print(f"| greedy outputs equal to plain generate | {same}/{len(gensb)} |")
    print(f"| scoring, shared-prefix reuse ({prefix_tokens:.0f}-token prefixes, 2 options) | {len(score_chats) / ts:.2f} prompts/s |")
    print(f"| scoring, naive recompute per option | {len(score_chats) / tn:.2f} prompts/s |")
    print(f"| ratio shared / naive | {tn / ts:.2f}x (max |diff| {maxdiff:.1e} nats) |")


if __name__ == "__main__":
    main()
