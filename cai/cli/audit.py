"""`cai audit`: audits of the toolkit's judges; `cai audit labeler` checks the AI labeler against humans."""

from __future__ import annotations

from pathlib import Path

import typer

from cai.cli import backend_options as bo
from cai.cli import label as lab

app = typer.Typer(help="Audit the AI labeler against human labels.", no_args_is_help=True)


@app.command("labeler")
def labeler(
    pairs: Path = typer.Option(..., "--pairs", help="Human-labelled pairs JSONL: prompt/chosen/rejected, chosen = the human's pick."),
    feedback_model: str = typer.Option("default", "--feedback-model", "-m", help="The labeler model ('default' = embedded SmolLM2-135M-Instruct)."),
    feedback_backend: str = typer.Option("hf", "--feedback-backend", help="hf or openai."),
    feedback_base_url: list[str] | None = typer.Option(None, "--feedback-base-url", help="OpenAI-compatible server(s) of the labeler (repeatable)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c", help="Constitution file or shipped name."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N pairs of the file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the principle draws."),
    output: Path = typer.Option(Path("runs/audit-labeler"), "--output", "-o", help="Folder for labels.jsonl (resumable), audit.json, reliability.png."),
    bins: int = typer.Option(5, "--bins", help="Calibration bins over confidence [0.5, 1]."),
    principles_per_pair: int = lab.PrinciplesOpt,
    cot: bool = lab.CotOpt,
    cot_clamp: tuple[float, float] = lab.CotClampOpt,
    cot_max_new_tokens: int = lab.CotTokensOpt,
    no_few_shot: bool = lab.NoFewShotOpt,
    pairs_per_call: int = lab.PairsPerCallOpt,
    feedback_batch_size: int = lab.FeedbackBatchOpt,
    api_key_env: str = bo.ApiKeyEnvOpt,
    concurrency: int = bo.ConcurrencyOpt,
    timeout: float = bo.TimeoutOpt,
    max_retries: int = bo.MaxRetriesOpt,
    device: str | None = bo.DeviceOpt,
    dtype: str | None = bo.DtypeOpt,
    trust_remote_code: bool = bo.TrustRemoteCodeOpt,
    chat_template: str | None = bo.ChatTemplateOpt,
) -> None:
    """Label human pairs with the AI labeler and report agreement, order flips and calibration."""
    import logging

    from tqdm import tqdm

    from cai.audit.labeler import audit_labels, format_audit, plot_reliability
    from cai.cli.logs import setup_logging
    from cai.constitution.schema import load_constitution
    from cai.core.atomic_files import write_json_atomic
    from cai.core.errors import CaiError
    from cai.core.jsonl import JsonlWriter
    from cai.stages.label.labeler import LabelConfig, label_id_for, label_records, load_pairs_for_audit
    from cai.stages.label.outputs import labels_in_order

    setup_logging()
    log = logging.getLogger("cai.audit.labeler")
    if bins < 1:
        raise CaiError(f"--bins {bins}: need at least 1")
    const = load_constitution(constitution)
    config = LabelConfig(principles_per_pair=principles_per_pair, seed=seed, cot=cot, cot_clamp=tuple(cot_clamp),
                         cot_max_new_tokens=cot_max_new_tokens, few_shot=not no_few_shot, batch_size=pairs_per_call)
    todo_pairs = load_pairs_for_audit(pairs, limit)
    ids = list(dict.fromkeys(label_id_for(p.id, feedback_model, feedback_backend, const, config) for p in todo_pairs))
    output.mkdir(parents=True, exist_ok=True)
    labels_path = output / "labels.jsonl"
    with JsonlWriter(labels_path) as writer:
        todo = sum(i not in writer for i in ids)
        if todo:
            log.info("labelling %d human pair(s) from %s (%d already in %s) with %s feedback model %s, both orders",
                     todo, pairs, len(ids) - todo, labels_path, feedback_backend, feedback_model)
            be = bo.backend_from_options(
                feedback_backend, feedback_model, base_url=feedback_base_url, api_key_env=api_key_env,
                concurrency=concurrency, timeout=timeout, max_retries=max_retries, batch_size=feedback_batch_size,
                device=device, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template)
            with tqdm(total=len(ids), initial=len(ids) - todo, desc="audit", unit="pair") as bar:
                for rec in label_records(todo_pairs, be, const, config, done=writer.__contains__):
                    writer.write(rec)
                    bar.update(1)
    labels = labels_in_order(labels_path, ids)
    audit = audit_labels(labels, bins)
    audit["settings"] = {"pairs_file": str(pairs), "limit": limit, "seed": seed, "feedback_model": feedback_model,
                         "feedback_backend": feedback_backend, "constitution": const.ref().model_dump(),
                         "config": config.identity()}
    write_json_atomic(output / "audit.json", audit)
    png = plot_reliability(audit, output / "reliability.png")
    print(format_audit(audit))
    log.info("wrote %s, %s and the raw labels %s", output / "audit.json", png, labels_path)
