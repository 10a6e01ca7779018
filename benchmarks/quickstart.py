"""Per-stage wall time of the quickstart recipe, from one fresh run, against its 10-minute stage budget.

Runs ``cai run examples/recipes/quickstart.yaml`` in a fresh run directory (the
model conversion cache is reused), then reads each stage's ``stage.json`` and
prints its seconds, the share of the total, and the total stage time over the
budget. Usage::

    python benchmarks/quickstart.py [--recipe examples/recipes/quickstart.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 600.0


def stage_times(run_dir: Path) -> list[tuple[str, float]]:
    """``(stage, seconds)`` of every finished stage in the run directory, in pipeline order."""
    out = []
    for state in run_dir.glob("*/stage.json"):
        data = json.loads(state.read_text(encoding="utf-8"))
        # finished_at has whole seconds: a 0-second stage ties with the one before it; mtime breaks the tie
        seconds = float(data.get("seconds", 0.0))
        out.append((data["finished_at"], state.stat().st_mtime, data["stage"], seconds))
    return [(name, s) for _, _, name, s in sorted(out)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "examples" / "recipes" / "quickstart.yaml")
    ap.add_argument("--keep", type=Path, default=None, help="run directory to keep (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cai-bench-quickstart-") as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cai", "run", str(args.recipe), "--run-dir", str(run_dir)],
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"cai run failed ({r.returncode}):\n{r.stderr[-3000:]}")
        times = stage_times(run_dir)
        total = sum(s for _, s in times)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"quickstart, fresh run directory, model cached; load (1 min) {load:.1f}")
        for name, s in times:
            print(f"  {name:<10} {s:7.1f} s  {100 * s / total:5.1f}%")
        print(f"stages {total:.1f} s = {total / BUDGET_S:.2f} x the {BUDGET_S / 60:.0f}-minute budget; "
              f"wall {wall:.1f} s (with start-up and model loads)")
        table = r.stdout[r.stdout.find("before/after"):]
        print(table.strip())


if __name__ == "__main__":
    main()
