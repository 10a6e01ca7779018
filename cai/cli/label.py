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
from typing import TYPE_CHECKING, Any

import typer

from cai.cli import backend_options as bo
from cai.cli import source_options as so

if TYPE_CHECKING:
    from cai.backends.protocol import Backend
    from cai.stages.label.stage import LabelStageConfig

FeedbackModelOpt = typer.Option(None, "--feedback-model",
                                help="The feedback (labeler) model; default: --model.")
FeedbackBackendOpt = typer.Option(None, "--feedback-backend",
                                  help="hf or openai for the feedback model; default: --backend.")
FeedbackBaseUrlOpt = typer.Option(None, "--feedback-base-url",
                                  help="Server(s) of the feedback model (repeatable); default: --base-url.")
FeedbackBatchOpt = typer.Option(8, "--feedback-batch-size",
                                help="hf: feedback chats per forward pass (long prompts: keep it small).")
PrinciplesOpt = typer.Option(1, "--principles-per-pair",
                             help="Principles sampled per pair; their soft labels are averaged.")
CotOpt = typer.Option(False, "--cot",
                      help="The feedback model reasons step by step before the options are scored.")
CotClampOpt = typer.Option((0.4, 0.6), "--cot-clamp", help="With --cot, clamp each read's p(A) to [LOW, "
                           "HIGH] (the paper: 0.4 0.6; '0 1' for none).")
CotTokensOpt = typer.Option(256, "--cot-max-new-tokens", help="With --cot, the reasoning's token budget.")
NoFewShotOpt = typer.Option(False, "--no-few-shot",
                            help="Leave out the constitution's feedback_examples (shorter prompts, faster).")
PairsPerCallOpt = typer.Option(8, "--pairs-per-call", help="Pairs sent to the feedback backend at once "
                               "(labels are saved after each call).")


def label(
    prompts: str | None = typer.Option(None, "--prompts", "-p",
                                       help="Prompts: the policy samples --k answers each. " + so.FORMS),
    responses: str | None = typer.Option(None, "--responses", help="Label existing answers instead: "
                                         "pairs (prompt/chosen/rejected, chosen shown first; or hh-rlhf, "
                                         "UltraFeedback, implicit-prompt, PKU-SafeRLHF rows) or answers "
                                         "(prompt/completion, grouped by prompt); any record source."),
    columns: str | None = typer.Option(None, "--columns", help="Column mapping of --prompts or --responses, "
                                       "FIELD=COLUMN,...; --human takes its own: --human "
                                       "SRC#FIELD=COLUMN."),
    output: Path = typer.Option(Path("runs/label"), "--output", "-o", help="Run folder (reruns resume)."),
    constitution: str = typer.Option("harmless", "--constitution", "-c",
                                     help="Constitution file or shipped name."),
    k: int = typer.Option(2, "--k", help="Answers sampled per prompt (>= 2)."),
    pairing: str = typer.Option("all", "--pairing", help="With k > 2: 'all' pairs i<j of distinct answers, "
                                "or 'disjoint' (0,1), (2,3)..."),
    temperature: float = typer.Option(0.8, "--temperature",
                                      help="Sampling temperature of candidates (>= 0.7)."),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Candidate answer length."),
    system_prompt: str | None = typer.Option(None, "--system-prompt",
                                             help="Policy system prompt (default: the constitution's)."),
    seed: int = typer.Option(0, "--seed", help="Base seed: candidate sampling and principle draws."),
    limit: int | None = typer.Option(None, "--limit",
                                     help="Only the first N prompts (or N pairs/answers of --responses)."),
    principles_per_pair: int = PrinciplesOpt,
    cot: bool = CotOpt,
    cot_clamp: tuple[float, float] = CotClampOpt,
    cot_max_new_tokens: int = CotTokensOpt,
    no_few_shot: bool = NoFewShotOpt,
    min_confidence: float = typer.Option(0.5, "--min-confidence",
                                         help="Keep AI labels with p_chosen >= this (0.5-1)."),
    drop_inconsistent: bool = typer.Option(False, "--drop-inconsistent",
                                           help="Keep only AI labels whose two orders agree."),
    keep_ties: bool = typer.Option(False, "--keep-ties", help="Keep AI labels that are exact ties (p_chosen "
                                   "0.5; dropped by default: plain DPO would train them as hard labels)."),
    labeler_audit: Path | None = typer.Option(None, "--labeler-audit", help="audit.json of `cai audit "
                                              "labeler` for this feedback model: its agreement with humans "
                                              "joins the signal verdict."),
    human: str | None = typer.Option(None, "--human", help="Human pairs (prompt/chosen/rejected, or hh-rlhf, "
                                     "UltraFeedback, PKU-SafeRLHF rows) merged into preferences.jsonl, e.g. "
                                     "Anthropic/hh-rlhf:harmless-base:train. " + so.FORMS),
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
    """Label answer pairs with AI feedback: soft labels from option log-probs, both orders, sampled
    principles.

    Writes to the run folder: candidates.jsonl (sampled answers, with --prompts), labels.jsonl (every label,
    failures included; append-only), preferences.jsonl (prompt/chosen/rejected + p_chosen, source, weight,
    label details; rebuilt from labels.jsonl with the filters and --human pairs) and stats.json.
    Rerun the same command to resume, or with other filters to rebuild the outputs without the model.
    """
    import logging

    from cai.backends.spec import spec_from_options
    from cai.cli.logs import setup_logging
    from cai.constitution.load import load_constitution
    from cai.core.errors import CaiError
    from cai.eval.inputs import load_audit
    from cai.stages.label.outputs import format_summary
    from cai.stages.label.pairs import read_pairs_file
    from cai.stages.label.stage import read_humans, run_label

    setup_logging(output)
    log = logging.getLogger("cai.label")
    if (prompts is None) == (responses is None):
        raise CaiError("give exactly one of --prompts (sample answers) and --responses (label given answers)")
    if pairing not in ("all", "disjoint"):
        raise CaiError(f"--pairing {pairing!r}: unknown", hint="use all or disjoint")
    if prompts is not None:
        if k < 2:
            raise CaiError(f"--k {k}: need at least 2 answers per prompt to make a pair",
                           hint="use --k 2 or more")
        if temperature < 0.7:
            raise CaiError(f"--temperature {temperature} is too low to sample different candidates",
                           hint="use --temperature 0.7 or more (default 0.8)")
    prompts, responses = so.mapped(prompts, columns), so.mapped(responses, columns)
    const = load_constitution(constitution)
    config = label_stage_config(principles_per_pair, seed, cot, cot_clamp, cot_max_new_tokens, no_few_shot,
                                pairs_per_call, min_confidence=min_confidence,
                                drop_inconsistent=drop_inconsistent,
                                keep_ties=keep_ties, human_weight=human_weight)
    humans = read_humans([human] if human else [], human_weight)
    audit = load_audit(labeler_audit) if labeler_audit else None
    shared = dict(api_key_env=api_key_env, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                  device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                  chat_template=chat_template)
    policy = spec_from_options(backend, model, base_url=base_url, batch_size=batch_size, **shared)
    f_kind = feedback_backend or backend
    feedback = spec_from_options(
        f_kind, feedback_model or model, prefix="feedback-", batch_size=feedback_batch_size,
        base_url=feedback_base_url or (base_url if f_kind == "openai" else None), **shared)
    output.mkdir(parents=True, exist_ok=True)
    built: dict[str, Any] = {}

    def policy_backend() -> Backend:
        if "policy" not in built:
            built["policy"] = policy.build()
        return built["policy"]

    if prompts is not None:
        pairs, report = _candidate_pairs(prompts, output, const, policy, policy_backend, k,
                                         temperature, top_p, max_new_tokens, system_prompt, seed,
                                         limit, pairing, max(batch_size, concurrency) * 2, log)
    else:
        pairs, report = read_pairs_file(responses, pairing)  # type: ignore[arg-type]
        pairs = pairs[: limit or None]
        log.info("%d pair(s) from %s", len(pairs), responses)
    same = prompts is not None and feedback.key() == policy.key()
    stats = run_label(pairs, const, feedback, config, output, humans=humans,
                      extra={"pairing": report.__dict__}, backend=policy_backend if same else None,
                      audit=audit)
    print(format_summary(stats))
    log.info("wrote %s (%d preference(s)) and %s from %s", output / "preferences.jsonl",
             stats["preferences"]["total"], output / "stats.json", output / "labels.jsonl")


def label_stage_config(principles_per_pair: int, seed: int, cot: bool, cot_clamp: tuple[float, float],
                       cot_max_new_tokens: int, no_few_shot: bool, pairs_per_call: int, **filters: Any
                       ) -> LabelStageConfig:
    """The labelling settings of ``cai label`` and ``cai audit labeler`` from their shared options."""
    from pydantic import ValidationError

    from cai.core.errors import pydantic_error
    from cai.stages.label.stage import LabelStageConfig

    try:
        return LabelStageConfig(principles_per_pair=principles_per_pair, seed=seed, cot=cot,
                                cot_clamp=tuple(cot_clamp), cot_max_new_tokens=cot_max_new_tokens,
                                few_shot=not no_few_shot, pairs_per_call=pairs_per_call, **filters)
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None


def _candidate_pairs(prompts, output, const, policy, policy_backend, k, temperature, top_p, max_new_tokens,
                     system_prompt, seed, limit, pairing, gen_batch, log):
    """Sample (or resume) ``k`` candidates per prompt into ``candidates.jsonl`` and pair them."""
    from pydantic import ValidationError

    from cai.core.errors import pydantic_error
    from cai.core.jsonl import read_prompts
    from cai.core.records import SamplingParams
    from cai.stages.generate import GenerateConfig, completion_ids, run_generate
    from cai.stages.label.pairs import pairs_from_candidates

    try:
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                n=k, seed=seed)
    except ValidationError as exc:
        raise pydantic_error(exc, "options", options=True) from None
    records = read_prompts(prompts)[: limit or None]
    config = GenerateConfig(params=params, system_prompt=system_prompt or const.system_prompt or None,
                            batch_size=gen_batch)
    path = output / "candidates.jsonl"
    run_generate(records, path, policy, config, constitution=const.ref(), what="candidate", desc="candidates",
                 backend=policy_backend)
    pairs, report = pairs_from_candidates(path, records, completion_ids(records, policy, config), pairing)
    log.info("%d pair(s) from %d prompt(s): %d duplicate answer(s) dropped, %d prompt(s) "
             "without two distinct answers", report.pairs, report.prompts, report.duplicate_answers,
             report.prompts_without_pair)
    return pairs, report
