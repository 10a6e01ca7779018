"""Candidates per minute of the SFT answers stage's sampling: managed ``transformers serve`` vs ``hf``.

Both sides run :func:`cai.stages.generate.run_generate` (what ``cai run``'s ``answers`` stage
calls) on the same red-team prompts, ``k`` samples each (temperature 0.7, top-p 0.95), on the
embedded default model in fp32 on the CPU: once with the local ``hf`` backend, once through a
``transformers serve`` that :class:`cai.engines.manager.EngineManager` starts on a free loopback
port and reaches with the ``openai`` backend. Printed: candidates per minute of each (sampling
only, and with the model load / server start included) and their ratio, from this one run.

Default run (4 prompts x 2, 32 new tokens): a few minutes on 2 quiet CPU cores, much longer when
they are shared (see benchmarks/README.md).

Usage: python benchmarks/engines.py [--prompts 4] [--k 2] [--new-tokens 32] [--concurrency 1]
       [--batch 16] [--serve-arg --continuous-batching ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "redteam_prompts_dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--k", type=int, default=2, help="samples per prompt (answers.k)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16, help="hf batch size (the recipe default)")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="requests in flight (without --continuous-batching the server runs them in turn)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra transformers serve argument")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from cai.backends.hf.loading import resolve_model
    from cai.backends.spec import BackendSpec
    from cai.core.jsonl import read_prompts
    from cai.core.records import SamplingParams
    from cai.engines.commands import Checkpoint
    from cai.engines.manager import EngineManager
    from cai.stages.generate import GenerateConfig, run_generate

    model = resolve_model("default")
    records = read_prompts(args.data)[: args.prompts]
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.7, top_p=0.95, n=args.k, seed=0)
    config = GenerateConfig(params=params)
    wanted = len(records) * args.k
    print(f"model {model}; {len(records)} prompts x {args.k} = {wanted} candidates, {args.new_tokens} new "
          f"tokens; torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="cai-bench-engines-"))

    def sample(spec: BackendSpec, backend, name: str) -> tuple[float, int]:
        t = time.perf_counter()
        run_generate(records, work / f"{name}.jsonl", spec, config, backend=lambda: backend, desc=name)
        took = time.perf_counter() - t
        written = sum(bool(line.strip()) for line in (work / f"{name}.jsonl").read_text().splitlines())
        return took, written

    t = time.perf_counter()
    local_spec = BackendSpec(name=model, batch_size=args.batch, dtype="float32")
    local = local_spec.build()
    local_load = time.perf_counter() - t
    local_s, local_n = sample(local_spec, local, "local")
    print(f"hf in-process: load {local_load:.1f} s, {local_n} candidates in {local_s:.1f} s", flush=True)
    del local

    with EngineManager(work, startup_timeout=600) as engines:
        t = time.perf_counter()
        ck = Checkpoint(model, dtype="float32", args=["--device", "cpu", *args.serve_arg])
        spec = engines.backend_spec("policy", "transformers", ck, concurrency=args.concurrency, timeout=600)
        start = time.perf_counter() - t
        served_s, served_n = sample(spec, spec.build(), "served")
    print(f"managed transformers serve: start {start:.1f} s, {served_n} candidates in {served_s:.1f} s "
          f"(log {work / 'engines' / 'policy-transformers.log'})", flush=True)

    def per_min(n: int, s: float) -> float:
        return 60.0 * n / s

    lo, se = per_min(local_n, local_s), per_min(served_n, served_s)
    lo_all, se_all = per_min(local_n, local_s + local_load), per_min(served_n, served_s + start)
    print(f"candidates/min, sampling only: hf {lo:.1f}, transformers serve {se:.1f} "
          f"(served / hf = {se / lo:.2f}x)")
    print(f"candidates/min, load or start included: hf {lo_all:.1f}, transformers serve {se_all:.1f} "
          f"(served / hf = {se_all / lo_all:.2f}x); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
