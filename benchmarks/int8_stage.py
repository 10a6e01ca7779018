"""fp32 against int8 on the quickstart critique stage's own sampling call, one run.

``benchmarks/int8.py`` measures greedy decoding of 32 new tokens; the quickstart's critique stage instead
samples (temperature 1.0, top-p 0.95, a seeded sampler per row), 3 samples of each red-team prompt under
the ``harmless`` system prompt, up to 48 new tokens, 32 chats a call. This script makes exactly those
calls (``HFBackend.generate`` with the stage's chats and ``SamplingParams``) on the first ``--prompts``
train red-team prompts of the quickstart's split, in fp32 and in int8, alternated (ABAB, ``--repeats``
rounds, best time kept), and prints tok/s of each and the ratio, beside the same chats decoded greedily
(the setting of ``int8.py``): the gap between the two ratios is what sampling and longer answers cost
outside the linear layers that int8 speeds up.

Usage: python benchmarks/int8_stage.py [--prompts 32] [--repeats 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPTS = ROOT / "examples" / "prompts" / "redteam.jsonl"


def stage_chats(n: int, system: str) -> list[list[dict[str, str]]]:
    """The critique stage's answer chats for the first ``n`` red-team prompts: system prompt + request."""
    rows = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines()[:n]]
    return [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (the quickstart's: 64)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from cai.backends.hf.backend import HFBackend
    from cai.constitution.load import load_constitution
    from cai.core.records import SamplingParams

    load0 = os.getloadavg()[0]
    const = load_constitution("harmless")
    chats = stage_chats(args.prompts, const.system_prompt)
    fp = HFBackend("default", batch_size=args.batch_size)
    i8 = HFBackend("default", batch_size=args.batch_size, dtype="int8", tokenizer=fp.tokenizer)
    settings = {"sampled (the stage: T 1.0, top-p 0.95, n 3, 48 tokens)":
                SamplingParams(max_new_tokens=48, temperature=1.0, top_p=0.95, n=3, seed=0),
                "greedy (n 1, 48 tokens)": SamplingParams(max_new_tokens=48, temperature=0.0)}
    for side in (fp, i8):  # warm-up
        side.generate(chats[:4], SamplingParams(max_new_tokens=4, temperature=0.0))
    best: dict[tuple[str, str], tuple[float, int]] = {}
    for _ in range(args.repeats):
        for name, params in settings.items():
            for label, side in (("fp32", fp), ("int8", i8)):
                t = time.perf_counter()
                out = side.generate(chats, params)
                dt, tokens = time.perf_counter() - t, sum(g.completion_tokens for g in out)
                if (name, label) not in best or dt < best[name, label][0]:
                    best[name, label] = (dt, tokens)
    n = sum(len(fp.render(c)) for c in chats) / len(chats)
    print(f"{len(chats)} chats, mean prompt {n:.0f} tokens, batch {args.batch_size}; 1-min load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| call | fp32 tok/s | int8 tok/s | int8 / fp32 |\n|---|---|---|---|")
    for name in settings:
        (t32, k32), (t8, k8) = best[name, "fp32"], best[name, "int8"]
        print(f"| {name} | {k32 / t32:.1f} ({k32} tokens, {t32:.1f} s) | {k8 / t8:.1f} ({k8} tokens, "
              f"{t8:.1f} s) | {(k8 / t8) / (k32 / t32):.2f}x |")


if __name__ == "__main__":
    main()
