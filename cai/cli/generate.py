"""`cai generate`: prompts through a backend to completion records (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo
from cai.cli import source_options as so


def generate(
    prompts: str = typer.Option(..., "--prompts", "-p",
                                help="Prompts: {\"prompt\": str} or {\"prompt\": \\[messages]} rows (or "
                                     "AdvBench, HarmBench, Do-Not-Answer shapes). " + so.FORMS),
    columns: str | None = so.ColumnsOpt,
    output: Path = typer.Option(..., "--output", "-o",
                                help="Output JSONL of completion records (appended; reruns resume)."),
    model: str = bo.ModelOpt,
    backend: str = bo.BackendOpt,
    constitution: Path | None = typer.Option(None, "--constitution", "-c",
                                             help="Use its system prompt and record its name/version/hash."),
    system_prompt: str | None = typer.Option(None, "--system-prompt",
                                             help="System prompt (overrides the constitution's)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    temperature: float = typer.Option(0.7, "--temperature", help="0 for greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    n: int = typer.Option(1, "--n", help="Samples per prompt."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each request derives its own from it."),
    stop: list[str] | None = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N prompts."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the output afresh instead of resuming."),
    base_url: list[str] | None = bo.BaseUrlOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    concurrency: int = bo.ConcurrencyOpt,
    timeout: float = bo.TimeoutOpt,
    max_retries: int = bo.MaxRetriesOpt,
    batch_size: int = bo.BatchSizeOpt,
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
    trust_remote_code: bool = bo.TrustRemoteCodeOpt,
    chat_template: str | None = bo.ChatTemplateOpt,
) -> None:
    """Run prompts through a model and append one completion record per prompt and sample."""
    from pydantic import ValidationError

    from cai.backends.spec import spec_from_options
    from cai.cli.logs import setup_logging
    from cai.core.errors import pydantic_error
    from cai.core.jsonl import read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.generate import GenerateConfig, run_generate

    setup_logging(output.parent)  # cai.log beside the output file
    records = read_prompts(so.mapped(prompts, columns))[: limit or None]
    try:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                n=n, seed=seed, stop=tuple(stop or ()))
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    spec = spec_from_options(backend, model, base_url=base_url, api_key_env=api_key_env,
                             concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                             batch_size=batch_size, device=device,
                             dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template)
    ref = None
    if constitution is not None:
        from cai.constitution.load import load_constitution

        const = load_constitution(constitution)
        ref = const.ref()
        system_prompt = system_prompt or const.system_prompt
    config = GenerateConfig(params=params, system_prompt=system_prompt or None,
                            batch_size=max(batch_size, concurrency) * 2)
    run_generate(records, output, spec, config, constitution=ref, resume=not overwrite)
