"""`cai label`: AI-feedback preference labels (RLAIF), resumable, with derived filtered outputs.

Run folder (``--output``/``-o``):

* ``candidates.jsonl``: sampled answers (CompletionRecord), with ``--prompts``;
* ``labels.jsonl``: every label, failures included (LabelRecord, append-only);
* ``preferences.jsonl``: TRL ``prompt``/``chosen``/``rejected`` + ``p_chosen``,
  ``source``, ``weight`` and ``label`` details, rebuilt on every run from
  ``labels.jsonl`` with the filters, plus ``--human`` pairs;
* ``stats.json``: the summary printed at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cai.cli import backend_options as bo

FeedbackModelOpt = typer.Option(None, "--feedback-model", help="The feedback (labeler) model; default: --model.")
FeedbackBackendOpt = typer.Option(None, "--feedback-backend", help="hf or openai for the feedback model; default: --backend.")
FeedbackBaseUrlOpt = typer.Option(None, "--feedback-base-url", help="Server(s) of the feedback model (repeatable); default: --base-url.")
FeedbackBatchOpt = typer.Option(8, "--feedback-batch-size", help="hf: feedback chats per forward pass (long prompts: keep it small).")
PrinciplesOpt = typer.Option(1, "--principles-per-pair", help="Principles sampled per pair; their soft labels are averaged.")
CotOpt = typer.Option(False, "--cot", help="The feedback model reasons step by step before the options are scored.")
CotClampOpt = typer.Option((0.4, 0.6), "--cot-clamp", help="With --cot, clamp each read's p(A) to [LOW, HIGH] (the paper: 0.4 0.6; '0 1' for none).")
CotTokensOpt = typer.Option(256, "--cot-max-new-tokens", help="With --cot, the reasoning's token budget.")
NoFewShotOpt = typer.Option(False, "--no-few-shot", help="Leave out the constitution's feedback_examples (shorter prompts, faster).")
PairsPerCallOpt = typer.Option(8, "--pairs-per-call", help="Pairs sent to the feedback backend at once (labels are saved after each call).")


def feedback_backend_factory(
    model: str, backend: str, base_url: list[str] | None, feedback_model: str | None, feedback_backend: str | None,
    feedback_base_url: list[str] | None, feedback_batch_size: int, shared: dict[str, Any], policy: Any = None,
):
    """``(model, kind, make)``: the feedback model's name and kind, and a function that builds it once.

    Reuses ``policy()`` when the feedback model is the same as the policy's.
    """
    f_model = feedback_model or model
    f_kind = feedback_backend or backend
    f_urls = feedback_base_url or (base_url if f_kind == "openai" else None)
    same = (f_model, f_kind, list(f_urls or [])) == (model, backend, list(base_url or [])) and policy is not None
    cache: dict[str, Any] = {}

    def make():
        if "be" not in cache:
            cache["be"] = policy() if same else bo.backend_from_options(
                f_kind, f_model, base_url=f_urls, **{**shared, "batch_size": feedback_batch_size})
        return cache["be"]

    return f_model, f_kind, make


def label(
    prompts: Path | None = typer.Option(None, "--prompts", "-p", help="Prompts JSONL: the policy samples --k answers each."),
    responses: Path | None = typer.Option(None, "--responses", help="Label existing answers instead: pairs (prompt/chosen/rejected, chosen shown first) or answers (prompt/completion, grouped by prompt)."),
    output: Path = typer.Option(Path("runs/label"), "--output", "-o", help="Run folder (reruns resume)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c", help="Constitution file or shipped name."),
    k: int = typer.Option(2, "--k", help="Answers sampled per prompt (>= 2)."),
    pairing: str = typer.Option("all", "--pairing", help="With k > 2: 'all' pairs i<j of distinct answers, or 'disjoint' (0,1), (2,3)..."),
    temperature: float = typer.Option(0.8, "--temperature", help="Sampling temperature of candidates (>= 0.7)."),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Candidate answer length."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", help="Policy system prompt (default: the constitution's)."),
    seed: int = typer.Option(0, "--seed", help="Base seed: candidate sampling and principle draws."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N prompts (or N pairs/answers of --responses)."),
    principles_per_pair: int = PrinciplesOpt,
    cot: bool = CotOpt,
    cot_clamp: tuple[float, float] = CotClampOpt,
    cot_max_new_tokens: int = CotTokensOpt,
    no_few_shot: bool = NoFewShotOpt,
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Keep AI labels with p_chosen >= this (0.5-1)."),
    drop_inconsistent: bool = typer.Option(False, "--drop-inconsistent", help="Keep only AI labels whose two orders agree."),
    human: Path | None = typer.Option(None, "--human", help="Human pairs (prompt/chosen/rejected) merged into preferences.jsonl."),
    human_weight: float = typer.Option(1.0, "--human-weight", help="Weight multiplier of --human pairs."),
    pairs_per_call: int = PairsPerCallOpt,
    model: str = bo.ModelOpt,
    backend: str = bo.BackendOpt,
    feedback_model: str | None = FeedbackModelOpt,
    feedback_backend: str | None = FeedbackBackendOpt,
    feedback_base_url: list[str] | None = FeedbackBaseUrlOpt,
    feedback_batch_size: int = FeedbackBatchOpt,
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
    """Label answer pairs with AI feedback: soft labels from option log-probs, both orders, sampled principles.

    Writes to the run folder: candidates.jsonl (sampled answers, with --prompts), labels.jsonl (every label,
    failures included; append-only), preferences.jsonl (prompt/chosen/rejected + p_chosen, source, weight,
    label details; rebuilt from labels.jsonl with the filters and --human pairs) and stats.json.
    Rerun the same command to resume, or with other filters to rebuild the outputs without the model.
    """
    import logging

    from tqdm import tqdm

    from cai.cli.logs import setup_logging
    from cai.constitution.schema import load_constitution
    from cai.core.errors import CaiError, resumable
    from cai.core.jsonl import JsonlWriter, read_records
    from cai.core.records import PreferenceRecord
    from cai.stages.label.labeler import LabelConfig, label_id_for, label_records, read_pairs_file
    from cai.stages.label.outputs import Filters, build_outputs, format_summary, human_preferences

    setup_logging()
    log = logging.getLogger("cai.stages.label.labeler")
    if (prompts is None) == (responses is None):
        raise CaiError("give exactly one of --prompts (sample answers) and --responses (label given answers)")
    if pairing not in ("all", "disjoint"):
        raise CaiError(f"--pairing {pairing!r}: unknown", hint="use all or disjoint")
    if prompts is not None:
        if k < 2:
            raise CaiError(f"--k {k}: need at least 2 answers per prompt to make a pair", hint="use --k 2 or more")
        if temperature < 0.7:
            raise CaiError(f"--temperature {temperature} is too low to sample different candidates",
                           hint="use --temperature 0.7 or more (default 0.8)")
    const = load_constitution(constitution)
    config = LabelConfig(principles_per_pair=principles_per_pair, seed=seed, cot=cot, cot_clamp=tuple(cot_clamp),
                         cot_max_new_tokens=cot_max_new_tokens, few_shot=not no_few_shot, batch_size=pairs_per_call)
    filters = Filters(min_confidence=min_confidence, drop_inconsistent=drop_inconsistent)
    humans = human_preferences(read_records(human, PreferenceRecord), human_weight) if human else []
    shared = dict(api_key_env=api_key_env, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                  device=device, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template)
    policy_cache: dict[str, Any] = {}

    def policy():
        if "be" not in policy_cache:
            policy_cache["be"] = bo.backend_from_options(backend, model, base_url=base_url, batch_size=batch_size,
                                                         **shared)
        return policy_cache["be"]

    f_model, f_kind, feedback = feedback_backend_factory(
        model, backend, base_url, feedback_model, feedback_backend, feedback_base_url, feedback_batch_size, shared,
        policy if prompts is not None else None)
    output.mkdir(parents=True, exist_ok=True)
    if prompts is not None:
        pairs, report = _candidate_pairs(prompts, output, const, policy, model, backend, k, temperature, top_p,
                                         max_new_tokens, system_prompt, seed, limit, pairing,
                                         max(batch_size, concurrency) * 2, log)
    else:
        pairs, report = read_pairs_file(responses, pairing)  # type: ignore[arg-type]
        pairs = pairs[: limit or None]
        log.info("%d pair(s) from %s", len(pairs), responses)
    ids = list(dict.fromkeys(label_id_for(p.id, f_model, f_kind, const, config) for p in pairs))
    labels_path = output / "labels.jsonl"
    with JsonlWriter(labels_path) as writer:
        todo = sum(i not in writer for i in ids)
        if todo:
            be = feedback()  # first: a bad option or model fails before anything is said
            log.info("labelling %d pair(s) (%d already in %s) with %s feedback model %s, %d principle(s) per pair, "
                     "both orders%s", todo, len(ids) - todo, labels_path, f_kind, f_model, principles_per_pair,
                     ", chain of thought" if cot else "")
            with resumable(labels_path, writer, "label"), tqdm(total=len(ids), initial=len(ids) - todo, desc="label", unit="pair") as bar:
                for rec in label_records(pairs, be, const, config, done=writer.__contains__):
                    writer.write(rec)
                    bar.update(1)
        else:
            log.info("all %d pair(s) already labelled in %s: rebuilding the outputs only", len(ids), labels_path)
    stats = build_outputs(output, ids, filters, humans, extra={
        "feedback_model": f_model, "feedback_backend": f_kind, "constitution": const.ref().model_dump(),
        "config": config.identity(), "pairing": report.__dict__})
    print(format_summary(stats))
    log.info("wrote %s (%d preference(s)) and %s from %s", output / "preferences.jsonl",
             stats["preferences"]["total"], output / "stats.json", labels_path)


def _candidate_pairs(prompts, output, const, policy, model, backend, k, temperature, top_p, max_new_tokens,
                     system_prompt, seed, limit, pairing, gen_batch, log):
    """Sample (or resume) ``k`` candidates per prompt into ``candidates.jsonl`` and pair them."""
    from pydantic import ValidationError
    from tqdm import tqdm

    from cai.core.errors import pydantic_error, resumable
    from cai.core.jsonl import JsonlWriter, read_prompts, read_records
    from cai.core.records import CompletionRecord, SamplingParams
    from cai.stages.generate import completion_id, generate_completions
    from cai.stages.label.labeler import pairs_from_completions

    try:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=k, seed=seed)
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    records = read_prompts(prompts)[: limit or None]
    sys_prompt = system_prompt or const.system_prompt or None
    path = output / "candidates.jsonl"
    ids = {completion_id(r.key(), model, backend, params, sys_prompt, s) for r in records for s in range(k)}
    with JsonlWriter(path) as writer:
        todo = sum(i not in writer for i in ids)
        if todo:
            be = policy()  # first: a bad option or model fails before anything is said
            log.info("sampling %d candidate answer(s) (%d prompt(s) x %d, temperature %g) with %s model %s -> %s; "
                     "%d already there", todo, len(records), k, temperature, backend, model, path, len(ids) - todo)
            with resumable(path, writer, "candidate"), tqdm(total=len(ids), initial=len(ids) - todo, desc="candidates", unit="answer") as bar:
                for rec in generate_completions(records, be, params, system_prompt=sys_prompt,
                                                constitution=const.ref(), done=writer.__contains__,
                                                batch_size=gen_batch):
                    writer.write(rec)
                    bar.update(1)
    order = {r.key(): n for n, r in enumerate(records)}
    cands = [c for c in read_records(path, CompletionRecord) if c.id in ids]
    cands.sort(key=lambda c: (order.get(c.prompt_id, 0), c.sample_index))
    pairs, report = pairs_from_completions(cands, pairing)  # type: ignore[arg-type]
    log.info("%d pair(s) from %d prompt(s): %d duplicate answer(s) dropped, %d prompt(s) without two distinct "
             "answers", report.pairs, report.prompts, report.duplicate_answers, report.prompts_without_pair)
    return pairs, report
