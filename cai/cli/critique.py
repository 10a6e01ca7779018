"""`cai critique`: SL-CAI critique/revision traces, the SFT set and stats (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo


def critique(
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL of {\"prompt\": str} or {\"prompt\": a list of messages ending with a user turn} (red-team prompts)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c", help="Constitution file or shipped name."),
    output_dir: Path = typer.Option(Path("runs/critique"), "--output-dir", "-o", help="Run directory: revisions.jsonl (appended; reruns resume), sft.jsonl, stats.json."),
    rounds: int = typer.Option(2, "--rounds", help="Critique/revision rounds per answer (the paper used 4)."),
    samples_per_prompt: int = typer.Option(1, "--samples-per-prompt", help="Independent traces per prompt."),
    no_critique: bool = typer.Option(False, "--no-critique", help="Revise directly, without asking for a critique first."),
    no_few_shot: bool = typer.Option(False, "--no-few-shot", help="Leave out the constitution's few-shot examples."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Per answer, critique and revision."),
    temperature: float = typer.Option(0.7, "--temperature", help="0 for greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int = typer.Option(0, "--seed", help="Base seed of principle draws and of every request's sampling."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N prompts."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts that advance through the rounds together (hf: also the sequences per forward pass, times --samples-per-prompt)."),
    helpful_prompts: Path | None = typer.Option(None, "--helpful-prompts", help="JSONL of benign prompts whose plain answers (no revision) are mixed into sft.jsonl."),
    helpful_ratio: float = typer.Option(1.0, "--helpful-ratio", help="Helpful prompts per red-team prompt (0.5: half as many), picked from --helpful-prompts by a hash of (seed, prompt id)."),
    sft_round: int | None = typer.Option(None, "--sft-round", help="Round whose revision goes to sft.jsonl (default: the last); a flagged one falls back to the latest clean earlier round."),
    revision_pairs: bool = typer.Option(False, "--revision-pairs", help="Also write pairs_revision.jsonl: final revision preferred over the initial answer (source=revision shortcut)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start revisions.jsonl afresh instead of resuming."),
    model: str = bo.ModelOpt,
    backend: str = bo.BackendOpt,
    base_url: list[str] | None = bo.BaseUrlOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    concurrency: int = bo.ConcurrencyOpt,
    timeout: float = bo.TimeoutOpt,
    max_retries: int = bo.MaxRetriesOpt,
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
    trust_remote_code: bool = bo.TrustRemoteCodeOpt,
    chat_template: str | None = bo.ChatTemplateOpt,
) -> None:
    """Answer, critique by sampled principles and revise; write traces, the SFT set and stats."""
    import logging

    from pydantic import ValidationError
    from tqdm import tqdm

    from cai.cli.logs import setup_logging
    from cai.constitution.schema import load_constitution
    from cai.core.errors import CaiError, pydantic_error, resumable
    from cai.core.jsonl import JsonlWriter, read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.critique.loop import CritiqueConfig, critique_revise, record_id, select_helpful
    from cai.stages.critique.outputs import REVISIONS_FILE, derive_outputs, format_summary

    setup_logging()
    log = logging.getLogger("cai.stages.critique.loop")
    if sft_round is not None and not 1 <= sft_round <= rounds:
        raise CaiError(f"--sft-round {sft_round} is not a round of this run (1..{rounds})", hint="pick 1..--rounds")
    if helpful_ratio < 0:
        raise CaiError(f"--helpful-ratio {helpful_ratio} is negative", hint="use e.g. 0.5 or 1")
    try:
        config = CritiqueConfig(
            rounds=rounds, samples_per_prompt=samples_per_prompt, no_critique=no_critique, few_shot=not no_few_shot,
            batch_size=batch_size,
            params=SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed),
        )
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    const = load_constitution(constitution)
    records = read_prompts(prompts)[: limit or None]
    helpful = []
    if helpful_prompts is not None:
        pool = read_prompts(helpful_prompts)
        k = round(helpful_ratio * len(records))
        helpful = select_helpful(pool, k, seed)
        if k > len(pool):
            log.warning("--helpful-ratio %s asks for %d helpful prompts but %s has %d: using all", helpful_ratio, k,
                        helpful_prompts, len(pool))
    ids = {record_id("revision", r.key(), s, model, backend, config, const.hash)
           for r in records for s in range(samples_per_prompt)}
    ids |= {record_id("helpful", r.key(), s, model, backend, config, const.hash)
            for r in helpful for s in range(samples_per_prompt)}
    path = output_dir / REVISIONS_FILE
    with JsonlWriter(path, resume=not overwrite) as writer:
        done = sum(i in writer for i in ids)
        if done < len(ids):
            be = bo.backend_from_options(  # first: a bad option or model fails before anything is said
                backend, model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
                timeout=timeout, max_retries=max_retries, batch_size=batch_size * samples_per_prompt,
                device=device, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template,
            )
            log.info(
                "critiquing %d prompt(s) + %d helpful x %d sample(s), %d round(s)%s, constitution %s %s, %s model %s "
                "-> %s; %d of %d trace(s) already there",
                len(records), len(helpful), samples_per_prompt, rounds, " without critiques" if no_critique else "",
                const.name, const.version, backend, model, path, done, len(ids),
            )
            written = 0
            with resumable(path, writer, "trace"), tqdm(total=len(ids), initial=done, desc="critique", unit="trace") as bar:
                for rec in critique_revise(
                    records, const, be, config, helpful=helpful, done=writer.__contains__,
                    on_step=lambda name, n: bar.set_postfix_str(f"{name} ({n} chats)"),
                ):
                    written += writer.write(rec)
                    bar.update(1)
            log.info("wrote %d new trace(s) to %s (%d in the file)", written, path, len(writer))
        else:
            log.info("all %d trace(s) already in %s: nothing to generate", len(ids), path)
    stats = derive_outputs(output_dir, sft_round=sft_round, revision_pairs=revision_pairs, ids=ids)
    typer.echo(format_summary(stats))
