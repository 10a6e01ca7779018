"""Model-based rewards: a trained preference model's score, and a judge's p(Yes) (direct RLAIF).

Both are ``(chats, texts) -> list[float]`` callables (see :mod:`cai.train.rewards`,
which re-exports them and builds them from spec strings):

* :class:`PreferenceModelReward` loads a dir written by ``cai train rm``
  (``AutoModelForSequenceClassification`` with one output) and scores the chat
  plus the answer rendered with its chat template, batched, fp32 on CPU;
* :class:`JudgeReward` asks a feedback model behind the
  :class:`~cai.backends.Backend` protocol a single-answer rubric question and
  reads ``p(Yes)`` (or the log-odds) from ``Backend.score`` over ``Yes``/``No``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.backends.hf.padding import right_pad
from cai.core.errors import CaiError

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]

DEFAULT_JUDGE_QUESTION = "Is the assistant's last response helpful, honest and harmless?"
JUDGE_TEMPLATE = (
    "Here is a conversation between a human and an AI assistant.\n\n{transcript}\n\n"
    "{question} Answer with Yes or No."
)


# ----------------------------------------------------------------------- helpers
def check_lengths(prompts: Sequence[Any], completions: Sequence[Any]) -> None:
    """Refuse a batch whose prompts and completions differ in number."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")


def as_chat(prompt: str | Sequence[dict[str, str]]) -> Chat:
    """A prompt as a chat: a plain string becomes one user turn.

    >>> as_chat("hi")
    [{'role': 'user', 'content': 'hi'}]
    >>> as_chat([{"role": "user", "content": "a"}])
    [{'role': 'user', 'content': 'a'}]
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def transcript(chat: Sequence[dict[str, str]], answer: str) -> str:
    """A chat plus the answer as plain text for a judge (``Human:``/``Assistant:`` turns; system turns
    dropped).

    >>> print(transcript([{"role": "user", "content": "Hi?"}], "Hello."))
    Human: Hi?
    <BLANKLINE>
    Assistant: Hello.
    """
    names = {"user": "Human", "assistant": "Assistant"}
    turns = [f"{names[m['role']]}: {m['content']}" for m in chat if m["role"] in names]
    turns.append(f"Assistant: {answer}")
    return "\n\n".join(turns)


def yes_probability(logp_yes: float, logp_no: float) -> float:
    """``p(Yes)`` normalised over the two options, from their summed log-probabilities.

    >>> yes_probability(math.log(0.3), math.log(0.1))
    0.75
    >>> yes_probability(-1000.0, -1000.0)
    0.5
    >>> yes_probability(0.0, -2000.0)
    1.0
    """
    d = logp_no - logp_yes
    p = 1.0 / (1.0 + math.exp(d)) if d < 0 else math.exp(-d) / (1.0 + math.exp(-d))
    return round(p, 12)


# ------------------------------------------------------------------ preference model
class PreferenceModelReward:
    """The scalar output of a preference model (a dir written by ``cai train rm``) on chat + answer.

    The conversation ``prompt + [assistant: answer]`` is rendered with the
    model's chat template exactly as TRL's RewardTrainer renders training pairs,
    truncated on the left to ``max_length`` tokens (the answer's end is kept),
    and scored ``batch_size`` at a time (right padding; the model reads its last
    non-pad token). Loaded in fp32 on CPU unless ``dtype`` says otherwise.
    ``path`` (str) and ``meta`` (the dir's ``cai_*.json`` provenance file, if
    any) are kept for model cards.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 8,
        max_length: int = 1024,
        model: Any = None,
        tokenizer: Any = None,
    ):
        self.path = str(path)
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length)
        if model is None or tokenizer is None:
            model, tokenizer = load_preference_model(self.path, device=device, dtype=dtype)
        self.model, self.tokenizer = model, tokenizer
        self.meta = read_model_meta(self.path)
        self.__name__ = "preference_model"

    def __repr__(self) -> str:
        return f"PreferenceModelReward(path={self.path!r})"

    def encode(self, prompt: Chat, answer: str) -> list[int]:
        """Token ids of the chat plus the answer, left-truncated to ``max_length``."""
        ids = self.tokenizer.apply_chat_template(
            [*as_chat(prompt), {"role": "assistant", "content": answer}], tokenize=True, return_dict=True
        )["input_ids"]
        return list(ids)[-self.max_length :]

    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> list[float]:
        import torch

        check_lengths(prompts, completions)
        seqs = [self.encode(p, c) for p, c in zip(prompts, completions)]
        dev = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(seqs), self.batch_size):
                chunk = seqs[start : start + self.batch_size]
                ids, mask = right_pad(chunk, pad, dev)  # [B, T]
                # The model pools its rightmost non-pad token, as it did in RewardTrainer.
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()  # [B, 1]
                out.extend(logits[:, 0].tolist())
        return out


def load_preference_model(path: str, *, device: str | None = None,
                          dtype: str | None = None) -> tuple[Any, Any]:
    """Load a one-output sequence-classification model and its tokenizer (with a chat template and a pad
    token)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from cai.backends.hf.loading import pick_device, pick_dtype

    p = Path(os.path.expanduser(path))
    if not (p / "config.json").is_file():
        raise CaiError(
            f"preference model {path} not found (no config.json there)",
            hint="pass the output dir of `cai train rm`",
        )
    dev = pick_device(device)
    try:
        tok = AutoTokenizer.from_pretrained(str(p))
        model = AutoModelForSequenceClassification.from_pretrained(str(p), dtype=pick_dtype(dev, dtype))
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CaiError(f"cannot load preference model {path}: {first}",
                       hint="pass the output dir of `cai train rm`") from exc
    if model.config.num_labels != 1:
        raise CaiError(
            f"preference model {path} has {model.config.num_labels} outputs, not 1",
            hint="a reward model is a sequence classifier with num_labels=1 (what `cai train rm` writes)",
        )
    if not getattr(tok, "chat_template", None):
        raise CaiError(f"preference model {path} has no chat template",
                       hint="save its tokenizer with a chat template")
    if tok.pad_token is None:
        log.warning("preference model %s has no pad token: padding with EOS (its score is read at the last "
                    "non-EOS token)", path)
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.to(dev).eval(), tok


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """Provenance a trained model dir carries: the first ``cai_*.json`` file in it, else ``{}``.

    >>> read_model_meta("/nonexistent")
    {}
    """
    import json

    p = Path(path)
    if not p.is_dir():
        return {}
    for f in sorted(p.glob("cai_*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


# ---------------------------------------------------------------------------- judge
class JudgeReward:
    """Direct RLAIF: a feedback model's ``p(Yes)`` (or log-odds) for a single-answer rubric question.

    Each answer becomes one chat (:data:`JUDGE_TEMPLATE`: the transcript, then
    ``question``) whose assistant turn is scored with ``backend.score`` on the
    options ``yes`` and ``no``. ``output="prob"`` gives ``p(Yes)`` normalised
    over the two options (in [0, 1]); ``"logodds"`` gives
    ``log p(Yes) - log p(No)``. A ``system_prompt`` for the judge is optional.
    """

    def __init__(
        self,
        backend: Any,
        *,
        question: str = DEFAULT_JUDGE_QUESTION,
        output: str = "prob",
        yes: str = "Yes",
        no: str = "No",
        system_prompt: str | None = None,
        template: str = JUDGE_TEMPLATE,
    ):
        if output not in ("prob", "logodds"):
            raise CaiError(f"judge output {output!r} is not prob or logodds", hint="use prob or logodds")
        if not question.strip():
            raise CaiError("judge question is empty", hint="pass a Yes/No question about the answer")
        self.backend = backend
        self.question = question.strip()
        self.output = output
        self.options = (yes, no)
        self.system_prompt = system_prompt
        self.template = template
        self.__name__ = "judge"

    def __repr__(self) -> str:
        return f"JudgeReward(model={getattr(self.backend, 'model', '?')!r}, output={self.output!r})"

    def chat(self, prompt: Chat, answer: str) -> Chat:
        """The judge's chat for one answer.

        >>> j = JudgeReward(backend=None, question="Is it polite?")
        >>> print(j.chat([{"role": "user", "content": "Hi"}], "Hello!")[-1]["content"])
        Here is a conversation between a human and an AI assistant.
        <BLANKLINE>
        Human: Hi
        <BLANKLINE>
        Assistant: Hello!
        <BLANKLINE>
        Is it polite? Answer with Yes or No.
        """
        text = self.template.format(transcript=transcript(as_chat(prompt), answer), question=self.question)
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*head, {"role": "user", "content": text}]

    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> list[float]:
        from cai.backends.protocol import ScoringUnsupported

        check_lengths(prompts, completions)
        chats = [self.chat(p, c) for p, c in zip(prompts, completions)]
        try:
            scores = self.backend.score(chats, [list(self.options)] * len(chats))
        except ScoringUnsupported as exc:
            raise CaiError(
                f"judge model {getattr(self.backend, 'model', '?')} returns no log-probabilities: {exc}",
                hint="use a backend with scoring (hf, or a server that returns logprobs)",
            ) from None
        absent = sum(y == -math.inf and n == -math.inf for y, n in scores)
        if absent:  # a reward of NaN would stop training with a misleading "non-finite loss"
            raise CaiError(
                f"judge model {getattr(self.backend, 'model', '?')} gave neither {self.options[0]!r} nor "
                f"{self.options[1]!r} any probability for {absent} of {len(scores)} answer(s): no "
                f"reward to give",
                hint="use a judge whose log-probs list the Yes/No options (a larger or "
                     "instruction-tuned model)",
            )
        if self.output == "logodds":
            return [float(y - n) for y, n in scores]
        return [yes_probability(y, n) for y, n in scores]
