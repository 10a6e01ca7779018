"""`cai generate`: prompts through a backend to completion records (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo


def generate(
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL of {\"prompt\": str} or {\"prompt\": \\[messages]}."),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL of completion records (appended; reruns resume)."),
    model: str = bo.ModelOpt,
    backend: str = bo.BackendOpt,
    constitution: Path | None = typer.Option(None, "--constitution", "-c", help="Use its system prompt and record its name/version/hash."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="System prompt (overrides the constitution's)."),
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
    import logging

    from pydantic import ValidationError
    from tqdm import tqdm

    from cai.cli.logs import setup_logging
    from cai.core.errors import pydantic_error, resumable
    from cai.core.jsonl import JsonlWriter, read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.generate import completion_id, generate_completions

    setup_logging()
    log = logging.getLogger("cai.generate")
    records = read_prompts(prompts)[: limit or None]
    try:
        params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed, stop=tuple(stop or ()),
        )
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    ref = None
    if constitution is not None:
        from cai.constitution.schema import load_constitution

        const = load_constitution(constitution)
        ref = const.ref()
        system_prompt = system_prompt or const.system_prompt
    with JsonlWriter(output, resume=not overwrite) as writer:
        done = sum(
            completion_id(r.key(), model, backend, params, system_prompt or None, k) in writer
            for r in records for k in range(n)
        )
        total = len(records) * n
        if done == total:
            log.info("all %d answer(s) already in %s: nothing to do", total, output)
            return
        be = bo.backend_from_options(  # first: a bad option or model fails before anything is said
            backend, model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout,
            max_retries=max_retries, batch_size=batch_size, device=device, dtype=dtype,
            trust_remote_code=trust_remote_code, chat_template=chat_template,
        )
        log.info("generating %d answer(s) (%d prompt(s) x %d) with %s model %s -> %s; %d already there",
                 total - done, len(records), n, backend, model, output, done)
        written = 0
        with resumable(output, writer, "answer"), tqdm(total=total, initial=done, desc="generate", unit="answer") as bar:
            for rec in generate_completions(
                records, be, params, system_prompt=system_prompt or None, constitution=ref,
                done=writer.__contains__, batch_size=max(batch_size, concurrency) * 2,
            ):
                written += writer.write(rec)
                bar.update(1)
    log.info("wrote %d new record(s) to %s (%d in all)", written, output, len(writer))
