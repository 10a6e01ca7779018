"""Backend options shared by every command that talks to a model.

Commands declare these typer options and turn the values into a
:class:`cai.backends.spec.BackendSpec` with :func:`cai.backends.spec.spec_from_options`
(imports happen there, not at CLI start-up); ``spec.build()`` loads the model.
"""

from __future__ import annotations

import typer

ModelOpt = typer.Option("default", "--model", "-m", help="'default' (embedded SmolLM2-135M-Instruct), a hub "
                        "id, a local path, or the server's model name.")
BackendOpt = typer.Option("hf", "--backend",
                          help="hf (local transformers) or openai (any OpenAI-compatible server).")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server URL, e.g. "
                          "http://127.0.0.1:8000/v1; repeat for round-robin over several servers.")
ApiKeyEnvOpt = typer.Option("OPENAI_API_KEY", "--api-key-env",
                            help="Environment variable holding the API key (never written anywhere).")
ConcurrencyOpt = typer.Option(8, "--concurrency", help="openai: most requests in flight at once.")
TimeoutOpt = typer.Option(120.0, "--timeout",
                          help="openai: seconds per request before it fails (the SDK retries it).")
MaxRetriesOpt = typer.Option(2, "--max-retries", help="openai: the SDK's retries, the only retry layer.")
BatchSizeOpt = typer.Option(16, "--batch-size", help="hf: sequences per forward pass.")
DeviceOpt = typer.Option(None, "--device", help="hf: cpu, cuda, cuda:1, mps (default: best available).")
DtypeOpt = typer.Option(None, "--dtype",
                        help="hf: float32, bfloat16, float16, or int8 (CPU only: int8 weights and "
                        "activations, faster generation, slightly different outputs) (default: fp32 on CPU, "
                        "bf16/fp16 on GPU).")
TrustRemoteCodeOpt = typer.Option(False, "--trust-remote-code",
                                  help="hf: allow the model's own code to run (off unless you pass it).")
ChatTemplateOpt = typer.Option(None, "--chat-template",
                               help="hf: a Jinja chat template file for models without one.")
