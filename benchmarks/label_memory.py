"""Peak memory (RSS) of the `cai label` stage with the default model.

Runs the real CLI in a child process and reads the child's peak resident set
size from ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` once it exits:

* ``--mode prompts`` (default): the whole stage: the policy samples ``--k 2``
  answers (256 new tokens, the CLI defaults, batch 16) to ``--limit`` red-team
  prompts, then the feedback model (the same default model, loaded once more as
  the CLI does) labels the pairs, both orders;
* ``--mode responses``: labels ``--limit`` existing human pairs only.

Also prints, for scale, the peak RSS of a child that only imports torch and
loads the default model. Target: under 3 GB.

Usage: python benchmarks/label_memory.py [--mode prompts|responses] [--limit 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LOAD_ONLY = "from cai.backends.hf.backend import HFBackend; HFBackend('default')"


def child_peak_mb(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a fresh child; its peak RSS in MiB (Linux reports KiB) and wall time in seconds.

    Each call forks a new Python (``ru_maxrss`` of children is the max over all
    waited-for children, so the largest child so far is what it reports: run the
    smaller measurement first).
    """
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    took = time.perf_counter() - t
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("prompts", "responses"), default="prompts")
    ap.add_argument("--limit", type=int, default=8)
    args = ap.parse_args()

    cai = str(Path(sys.executable).with_name("cai"))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    base, t_base = child_peak_mb([sys.executable, "-c", LOAD_ONLY])
    with tempfile.TemporaryDirectory() as out:
        if args.mode == "prompts":
            cmd = [cai, "label", "--prompts", str(DATA / "redteam_prompts_dev.jsonl"), "--limit",
                   str(args.limit), "-o", out]
        else:
            cmd = [cai, "label", "--responses", str(DATA / "hh_harmless_pairs_dev.jsonl"), "--limit",
                   str(args.limit), "-o", out]
        peak, took = child_peak_mb(cmd)
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| peak RSS, python + torch + default model loaded | {base:.0f} MiB ({t_base:.0f} s) |")
    print(f"| peak RSS, `{' '.join(['cai'] + cmd[1:-2])}` | {peak:.0f} MiB ({took:.0f} s) |")
    print(f"| under 3 GB | {'yes' if peak < 3 * 1024 else 'NO'} |")


if __name__ == "__main__":
    main()
