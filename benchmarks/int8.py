"""fp32 against ``dtype: int8`` in the `hf` backend's own loop (``HFBackend.generate`` / ``score``), one run.

Both models are loaded in this process (int8 through the real path, ``HFBackend(dtype="int8")``, so its
calibration cache is used when present) and measured alternately, fp32, int8, fp32, int8
(``--repeats`` rounds): the machine is shared and other jobs' load then falls on both equally; the
figure to read is the ratio. The 1-min load average is printed at the start and the end.

* generation, greedy, ``--new-tokens`` new tokens, tok/s (tokens counted as generated, EOS stops a
  row): short prompts (benign instructions from the shared data, one user turn) at batch 1, 8 and 32,
  and the critique step's prompts (the ``harmless`` constitution's system prompt, few-shot turns, a
  red-team prompt, a canned answer and the critique request: ``benchmarks/generation.py``'s
  ``critique_chats``) at batch 1, 8 and 32. Best time of the repeats.
* greedy agreement of the batch-32 outputs: the share of rows identical token for token, and the mean
  position of the first differing token among the rows that differ.
* scoring: the labeller's option reads (``feedback_chat`` on hh-rlhf harmless dev pairs, one principle
  per pair taken in turn, both orders, scoring ``A`` / ``B``; few-shot off as in the quickstart): the max
  and mean absolute difference of the option log-probs, int8 against fp32, and the share of pairs whose
  preferred answer (mean of the two orders' unswapped p(A)) flips; against the fp32 run-to-run noise:
  a second fp32 run with the pairs in reverse order (other batch neighbours, as after a resume).
* memory: peak RSS of a fresh process that loads the model and generates one batch of 32 short prompts,
  fp32 and int8 (``--no-memory`` skips it).

Usage: python benchmarks/int8.py [--model default] [--new-tokens 32] [--repeats 2] [--pairs 24]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
BENIGN = ROOT.parent / "shared" / "data" / "benign_instructions.jsonl"
PAIRS = ROOT.parent / "shared" / "data" / "hh_harmless_pairs_dev.jsonl"
BATCHES = (1, 8, 32)


def short_chats(n: int, path: Path = BENIGN) -> list[list[dict[str, str]]]:
    """``n`` one-turn chats of short benign instructions (under 40 words), in file order."""
    rows = []
    for line in path.read_text().splitlines():
        p = json.loads(line)["prompt"]
        if isinstance(p, str) and len(p.split()) < 40:
            rows.append([{"role": "user", "content": p}])
        if len(rows) == n:
            break
    return rows


def first_difference(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token, None when identical.

    >>> fd = first_difference
    >>> fd([1, 2, 3], [1, 2, 4]), fd([1, 2], [1, 2, 5]), fd([1], [1])
    (2, 2, None)
    """
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def agreement(tok, ref: list[str], other: list[str]) -> tuple[float, float | None]:
    """(share of identical rows, mean first-difference position among the others)."""
    firsts = [first_difference(tok(r, add_special_tokens=False)["input_ids"],
                               tok(o, add_special_tokens=False)["input_ids"]) for r, o in zip(ref, other)]
    diff = [f for f in firsts if f is not None]
    return 1 - len(diff) / len(firsts), (sum(diff) / len(diff) if diff else None)


def timed_generate(backend, chats, params) -> tuple[float, list[str], int]:
    t = time.perf_counter()
    out = backend.generate(chats, params)
    return time.perf_counter() - t, [g.text for g in out], sum(g.completion_tokens for g in out)


def feedback_reads(pairs, const):
    """The labeller's option-read chats: each pair in both orders, principles taken in turn."""
    from cai.stages.label.feedback import ORDERS, feedback_chat, shown_answers

    chats = []
    for i, pair in enumerate(pairs):
        p = const.principles[i % len(const.principles)]
        for order in ORDERS:
            first, second = shown_answers(pair.answer_a, pair.answer_b, order)
            chats.append(feedback_chat([], pair.prompt, const.comparison_for(p), first, second, "score"))
    return chats


def preferred(scores: list[list[float]]) -> list[bool]:
    """Per pair (reads ab, ba in turn): whether answer_a is preferred (mean unswapped p(A) > 0.5)."""
    from cai.stages.label.feedback import option_probability, unswap

    out = []
    for k in range(0, len(scores), 2):
        ps = [unswap(option_probability(*scores[k + j]) or 0.5, o) for j, o in enumerate(("ab", "ba"))]
        out.append(sum(ps) / 2 > 0.5)
    return out


def score_stats(ref, other) -> tuple[float, float, float]:
    """(max, mean) |log-prob difference| over all option reads, and the share of flipped labels."""
    d = [abs(a - b) for ra, rb in zip(ref, other) for a, b in zip(ra, rb)]
    pa, pb = preferred(ref), preferred(other)
    return max(d), sum(d) / len(d), sum(x != y for x, y in zip(pa, pb)) / len(pa)


def peak_rss(model: str, dtype: str, new_tokens: int) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``model`` in ``dtype`` and generates one batch of 32."""
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]);"
        "sys.path.insert(0, sys.argv[1] + '/benchmarks');"
        "from int8 import short_chats; from cai.backends.hf.backend import HFBackend;"
        "from cai.core.records import SamplingParams;"
        "b = HFBackend(sys.argv[2], batch_size=32, dtype=sys.argv[3] or None);"
        "b.generate(short_chats(32), SamplingParams(max_new_tokens=int(sys.argv[4]), temperature=0.0));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), model, dtype, str(new_tokens)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="ABAB rounds; the best time of each is kept")
    ap.add_argument("--batch1-prompts", type=int, default=2, help="prompts generated one at a time")
    ap.add_argument("--pairs", type=int, default=24, help="labelled pairs (two option reads each)")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from generation import critique_chats

    from cai.backends.hf.backend import HFBackend
    from cai.backends.hf.quantize import calibrate, calibration_ids
    from cai.constitution.load import load_constitution
    from cai.core.records import SamplingParams
    from cai.stages.label.pairs import load_pairs_for_audit

    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    fp = HFBackend(args.model, batch_size=32)
    t_fp = time.perf_counter() - t
    t = time.perf_counter()
    i8 = HFBackend(args.model, batch_size=32, dtype="int8", tokenizer=fp.tokenizer)
    t_i8 = time.perf_counter() - t
    t = time.perf_counter()
    calibrate(fp.lm, calibration_ids(fp.tokenizer))
    t_cal = time.perf_counter() - t
    print(f"model {args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"1-min load average at start {load0:.1f}")
    print(f"load: fp32 {t_fp:.1f}s, int8 {t_i8:.1f}s (of which calibration when not cached: {t_cal:.1f}s)")

    kinds = {"short": short_chats(32), "critique": critique_chats(32)}
    for name, chats in kinds.items():
        n = sum(len(fp.render(c)) for c in chats) / len(chats)
        print(f"{name} prompts: mean {n:.0f} tokens")
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
    sides = {"fp32": fp, "int8": i8}
    best: dict[tuple[str, int, str], float] = {}
    toks: dict[tuple[str, int, str], int] = {}
    texts: dict[tuple[str, str], list[str]] = {}
    for side in sides.values():  # warm-up: the prefix store, the allocator
        side.batch_size = 32
        side.generate(kinds["critique"][:4], SamplingParams(max_new_tokens=4, temperature=0.0))
    for rep in range(args.repeats):
        for kind, chats in kinds.items():
            for bs in BATCHES:
                sub = chats[: args.batch1_prompts] if bs == 1 else chats[:bs]
                for sname, be in sides.items():
                    be.batch_size = bs
                    dt, out, n = timed_generate(be, sub, params)
                    key = (kind, bs, sname)
                    best[key] = min(best.get(key, float("inf")), dt)
                    toks[key] = n
                    if bs == 32:
                        texts[(kind, sname)] = out
            print(f"round {rep + 1}/{args.repeats} {kind} done, load {os.getloadavg()[0]:.1f}", flush=True)

    const = load_constitution("harmless")
    pairs = load_pairs_for_audit(PAIRS, args.pairs)
    reads = feedback_reads(pairs, const)
    conts = [["A", "B"]] * len(reads)
    fp.batch_size = i8.batch_size = 16
    t = time.perf_counter()
    s_fp = fp.score(reads, conts)
    t_sfp = time.perf_counter() - t
    t = time.perf_counter()
    s_i8 = i8.score(reads, conts)
    t_si8 = time.perf_counter() - t
    s_fp2 = list(reversed(fp.score(list(reversed(reads)), conts)))
    s_i82 = list(reversed(i8.score(list(reversed(reads)), conts)))

    print()
    print("| figure | fp32 | int8 | int8 / fp32 |")
    print("|---|---|---|---|")
    for kind in kinds:
        for bs in BATCHES:
            a, b = (toks[(kind, bs, s)] / best[(kind, bs, s)] for s in sides)
            print(f"| tok/s, {kind} prompts, batch {bs} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    for kind in kinds:
        same, pos = agreement(fp.tokenizer, texts[(kind, "fp32")], texts[(kind, "int8")])
        where = f", first difference at token {pos:.1f} on average" if pos is not None else ""
        print(f"| greedy rows identical to fp32, {kind} prompts, batch 32 | 100% | {same:.0%}{where} | |")
    mx, mean, flips = score_stats(s_fp, s_i8)
    nmx, nmean, nflips = score_stats(s_fp, s_fp2)
    imx, imean, iflips = score_stats(s_i8, s_i82)
    print(f"| option log-prob \\|diff\\| vs fp32, max / mean ({len(reads)} reads) | {nmx:.1e} / {nmean:.1e} "
          f"(fp32 rerun, other batches) | {mx:.3f} / {mean:.3f} | |")
    print(f"| labels whose preferred answer flips ({len(pairs)} pairs) | {nflips:.0%} (fp32 rerun) | "
          f"{flips:.0%} (int8 rerun vs int8: {iflips:.0%}, max diff {imx:.1e}) | |")
    print(f"| scoring time, {len(reads)} option reads, batch 16 | {t_sfp:.1f}s | {t_si8:.1f}s | "
          f"{t_sfp / t_si8:.2f}x |")
    if not args.no_memory:
        m_fp = peak_rss(args.model, "", args.new_tokens)
        m_i8 = peak_rss(args.model, "int8", args.new_tokens)
        print(f"| peak RSS, load + one batch of 32 (fresh process) | {m_fp:.0f} MiB | {m_i8:.0f} MiB | "
              f"{m_i8 / m_fp:.2f}x |")
    print(f"| 1-min load average, start / end ({os.cpu_count()} cores) | {load0:.1f} / "
          f"{os.getloadavg()[0]:.1f} | | |")


if __name__ == "__main__":
    main()
