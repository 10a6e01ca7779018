"""Generation throughput of the `hf` backend against plain `model.generate`, default model.

Both sides get the same realistic prompts: the shipped example prompts
(benign and red-team questions, 10-30 words) as one user turn each, rendered
with the model's chat template (SmolLM2 adds its default system prompt), so the
prompts have varied lengths. Greedy, ``--new-tokens`` (128) new tokens.

* plain: ``model.generate(**enc, max_new_tokens=N, do_sample=False)`` on one
  batch of all ``--batch`` prompts in their file order, left-padded by the
  tokenizer, with generate's default settings (its default ``DynamicCache``,
  finished rows kept until every row is done). Tokens counted up to each row's
  first EOS.
* hf: ``HFBackend.generate`` at ``batch_size=--batch`` on the same chats: its
  own decode loop (length-sorted, shared prefix computed once, preallocated KV
  cache, finished rows dropped). Tokens counted the same way.

The two are run alternately ``--repeats`` times and the best time of each is
kept (the machine is shared; best-of damps other jobs' noise equally for both).
Also printed: hf at batch 1 on ``--batch1-prompts`` prompts, hf with each lever
off (``--levers``), both sides sampling (``--sampling``), and how many greedy outputs are token-identical to
plain ``generate`` (fp32 near-ties can flip after different padding or batching).

Usage: python benchmarks/generation.py [--model default] [--new-tokens 128] [--batch 32] [--repeats 2]
       [--levers] [--sampling]
"""

from __future__ import annotations

import argparse
import json
import os
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


CANNED_ANSWER = "Sure. Here is what I know about that, step by step."


def critique_chats(n: int) -> list[list[dict[str, str]]]:
    """The critique step's chats on the shipped red-team prompts: the ``harmless`` constitution's system
    prompt and few-shot examples (resolved for each chat's principle, principles taken in turn), the
    prompt, a canned first answer, and the principle's critique request (what ``cai critique`` sends)."""
    from cai.constitution.load import load_constitution
    from cai.core.records import Message
    from cai.stages.critique.prompts import critique_chat, example_turns

    const = load_constitution("harmless")
    rows = [json.loads(line)["prompt"]
            for line in (ROOT / "examples" / "prompts" / "redteam.jsonl").read_text().splitlines()]
    rows = [r for r in rows if isinstance(r, str)]
    chats = []
    for i in range(n):
        principle = const.principles[i % len(const.principles)]
        convo = [Message(role="user", content=rows[i % len(rows)]),
                 Message(role="assistant", content=CANNED_ANSWER)]
        chat = critique_chat(const.system_prompt, example_turns(const, principle), convo, principle)
        chats.append([{"role": m.role, "content": m.content} for m in chat])
    return chats


def until_eos(row: list[int], eos: set[int]) -> list[int]:
    """Tokens before the first EOS.

    >>> until_eos([5, 6, 2, 7], {2})
    [5, 6]
    """
    for i, t in enumerate(row):
        if t in eos:
            return row[:i]
    return row


def step_vs_linears(lm, batch: int, length: int, steps: int = 5) -> tuple[float, float]:
    """Seconds per decode step (``batch`` rows, ``length`` cached positions) and per pass of its Linear layers
    alone.

    The Linear layers (projections, MLP, lm head) on ``[batch, in]`` inputs are
    the matmul work every decoder must do per step: their time is the floor a
    decode loop can approach, whatever it does around them.
    """
    import torch

    from cai.backends.hf.cache import cache_kwargs, make_cache

    linears = [m for m in lm.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(batch, m.in_features) for m in linears]
    with torch.inference_mode():
        cache = make_cache(lm, batch, length + steps + 1)
        lm(input_ids=torch.randint(100, 1000, (batch, length)), **cache_kwargs(lm, cache),
           logits_to_keep=1)
        tok = torch.randint(100, 1000, (batch, 1))
        t = time.perf_counter()
        for _ in range(steps):
            lm(input_ids=tok, **cache_kwargs(lm, cache))
        step = (time.perf_counter() - t) / steps
        t = time.perf_counter()
        for _ in range(steps):
            for m, x in zip(linears, inputs):
                m(x)
        return step, (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batch1-prompts", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workload", choices=("questions", "critique"), default="questions",
                    help="questions: the example prompts, one user turn each (default); "
                         "critique: the critique step's chats (system prompt, few-shot examples, prompt, "
                         "answer, critique request)")
    ap.add_argument("--levers", action="store_true",
                    help="also time hf with the KV preallocation / prefix reuse off")
    ap.add_argument("--sampling", action="store_true",
                    help="also time both sides sampling (temperature 0.7, top-p 0.95; once each)")
    args = ap.parse_args()

    import torch

    from cai.backends.hf.backend import HFBackend
    from cai.core.records import SamplingParams

    backend = HFBackend(args.model, batch_size=args.batch)
    tok, lm = backend.tokenizer, backend.lm
    print(f"model {args.model} on {backend.device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.1f}", flush=True)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
    if args.workload == "critique":
        chats = critique_chats(args.batch)
    else:
        chats = [[{"role": "user", "content": p}] for p in load_prompts(args.batch)]
    enc = tok.apply_chat_template(chats, add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                  padding=True)  # left padding: the backend set padding_side="left"
    assert tok.padding_side == "left"
    eos = backend.eos_ids
    backend.generate(chats[:2], SamplingParams(max_new_tokens=4))  # warm-up

    def run_hf():
        t = time.perf_counter()
        gens = backend.generate(chats, params)
        return gens, time.perf_counter() - t

    def run_plain():
        t = time.perf_counter()
        with torch.inference_mode():
            out = lm.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False,
                              pad_token_id=tok.pad_token_id)
        took = time.perf_counter() - t
        return [until_eos(r, eos) for r in out[:, enc["input_ids"].shape[1]:].tolist()], took

    hf_times, plain_times = [], []
    for r in range(args.repeats):
        gens, th = run_hf()
        plain, tp = run_plain()
        hf_times.append(th)
        plain_times.append(tp)
        print(f"repeat {r}: hf {th:.1f} s, plain {tp:.1f} s", flush=True)
    hf_tokens = sum(g.completion_tokens for g in gens)
    plain_tokens = sum(len(r) for r in plain)
    tps_hf, tps_plain = hf_tokens / min(hf_times), plain_tokens / min(plain_times)
    same = sum(g.text == tok.decode(r, skip_special_tokens=True) for g, r in zip(gens, plain))

    backend.batch_size = 1
    t = time.perf_counter()
    gens1 = backend.generate(chats[: args.batch1_prompts], params)
    tps1 = sum(g.completion_tokens for g in gens1) / (time.perf_counter() - t)
    backend.batch_size = args.batch

    lever_rows = []
    if args.levers:
        for name, prealloc, reuse in (("hf, DynamicCache instead of preallocated", False, True),
                                      ("hf, no shared-prefix reuse", True, False)):
            backend.preallocate, backend.reuse_prefix = prealloc, reuse
            _, tl = run_hf()
            lever_rows.append((name, hf_tokens / tl))
        backend.preallocate, backend.reuse_prefix = True, True

    if args.sampling:
        sampled = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.95, seed=0)
        t = time.perf_counter()
        gs = backend.generate(chats, sampled)
        lever_rows.append(("hf, sampling", sum(g.completion_tokens for g in gs) / (time.perf_counter() - t)))
        t = time.perf_counter()
        with torch.inference_mode():
            out = lm.generate(**enc, max_new_tokens=args.new_tokens, do_sample=True,
                              temperature=0.7, top_p=0.95, pad_token_id=tok.pad_token_id)
        took = time.perf_counter() - t
        rows = [until_eos(r, eos) for r in out[:, enc["input_ids"].shape[1]:].tolist()]
        lever_rows.append(("plain model.generate, sampling", sum(len(r) for r in rows) / took))

    mean_len = sum(len(backend.render(c)) for c in chats) // len(chats) + args.new_tokens // 2
    step, floor = step_vs_linears(lm, args.batch, mean_len)

    n = args.new_tokens
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| hf generate, batch 1, {n} new tokens | {tps1:.1f} tok/s |")
    print(f"| hf generate, batch {args.batch}, {n} new tokens | {tps_hf:.1f} tok/s |")
    print(f"| plain model.generate, batch {args.batch}, same prompts | {tps_plain:.1f} tok/s |")
    for name, v in lever_rows:
        print(f"| {name}, batch {args.batch} | {v:.1f} tok/s |")
    print(f"| ratio hf batch {args.batch} / hf batch 1 | {tps_hf / tps1:.2f}x |")
    print(f"| ratio hf batch {args.batch} / plain model.generate batch {args.batch} | "
          f"{tps_hf / tps_plain:.2f}x |")
    print(f"| greedy outputs identical to plain generate | {same}/{len(gens)} |")
    print(f"| tokens generated hf / plain | {hf_tokens} / {plain_tokens} |")
    print(f"| one decode step at batch {args.batch} ({mean_len} cached positions) / its Linear "
          f"layers alone | {step * 1e3:.0f} ms / {floor * 1e3:.0f} ms = {step / floor:.2f}x |")
    lengths = enc["attention_mask"].sum(1).tolist()
    print(f"| workload: {args.workload}, prompt tokens min/mean/max | "
          f"{min(lengths)}/{sum(lengths) // len(lengths)}/{max(lengths)} |")
    print(f"| load average (1 min) at the end, {os.cpu_count()} cores | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
