"""Backend options shared by every command that talks to a model.

Commands declare these typer options and pass the values to
:func:`backend_from_options`, which builds the backend (imports happen there,
not at CLI start-up).
"""

from __future__ import annotations

from typing import Any

import typer

ModelOpt = typer.Option("default", "--model", "-m", help="'default' (embedded SmolLM2-135M-Instruct), a hub id, a local path, or the server's model name.")
BackendOpt = typer.Option("hf", "--backend", help="hf (local transformers) or openai (any OpenAI-compatible server).")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1; repeat for round-robin over several servers.")
ApiKeyEnvOpt = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key (never written anywhere).")
ConcurrencyOpt = typer.Option(8, "--concurrency", help="openai: most requests in flight at once.")
TimeoutOpt = typer.Option(120.0, "--timeout", help="openai: seconds per request before it fails (the SDK retries it).")
MaxRetriesOpt = typer.Option(2, "--max-retries", help="openai: the SDK's retries, the only retry layer.")
BatchSizeOpt = typer.Option(16, "--batch-size", help="hf: sequences per forward pass.")
DeviceOpt = typer.Option(None, "--device", help="hf: cpu, cuda, cuda:1, mps (default: best available).")
DtypeOpt = typer.Option(None, "--dtype", help="hf: float32, bfloat16, float16 (default: fp32 on CPU, bf16/fp16 on GPU).")
TrustRemoteCodeOpt = typer.Option(False, "--trust-remote-code", help="hf: allow the model's own code to run (off unless you pass it).")
ChatTemplateOpt = typer.Option(None, "--chat-template", help="hf: a Jinja chat template file for models without one.")


def backend_from_options(
    backend: str,
    model: str,
    *,
    base_url: list[str] | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 120.0,
    max_retries: int = 2,
    batch_size: int = 16,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
) -> Any:
    """Build the backend the options name, with a clear error for a missing ``--base-url``."""
    from cai.backends import make_backend
    from cai.core.errors import CaiError

    if backend == "openai":
        if not base_url:
            raise CaiError("--backend openai needs --base-url", hint="e.g. --base-url http://127.0.0.1:8000/v1")
        return make_backend(
            "openai", model, base_urls=list(base_url), api_key_env=api_key_env,
            concurrency=concurrency, timeout=timeout, max_retries=max_retries,
        )
    if base_url:
        raise CaiError("--base-url is only for --backend openai", hint="add --backend openai, or drop --base-url")
    return make_backend(
        backend, model, batch_size=batch_size, device=device, dtype=dtype,
        trust_remote_code=trust_remote_code, chat_template=chat_template,
    )
