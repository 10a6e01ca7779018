"""Loading models and tokenizers for training, LoRA options, and the pad-token guard.

Names go through :func:`cai.backends.hf.loading.resolve_model` (``default``, a hub
id, or a local path). Weights load in fp32 on a machine without a GPU (bf16
matmuls are ~500x slower on CPU). ``trust_remote_code`` is only ever what the
user passed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cai.backends.hf.loading import from_pretrained, is_int8, pick_device, pick_dtype, resolve_model
from cai.core.errors import CaiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraOptions:
    """LoRA adapter settings (peft). ``target_modules=None`` adapts every linear layer."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise CaiError(f"LoRA rank {self.r} must be at least 1", hint="e.g. --lora-r 16")
        if not 0.0 <= self.dropout < 1.0:
            raise CaiError(f"LoRA dropout {self.dropout} must be in [0, 1)", hint="e.g. --lora-dropout 0.05")


@dataclass(frozen=True)
class ModelOptions:
    """How every trainer loads and saves its model: LoRA, dtype, remote code, chat template, resume, audit.

    ``dtype`` None means fp32 on CPU and bf16/fp16 on a GPU; ``resume`` continues from the
    newest checkpoint in the output folder (TRL trainers); ``audit`` is a labeler audit JSON
    to summarise in the model card.
    """

    lora: LoraOptions | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = None
    resume: bool = False
    audit: str | None = None


def lora_config(opts: LoraOptions | None, task_type: str = "CAUSAL_LM") -> Any:
    """A ``peft.LoraConfig`` for the options (``None`` when LoRA is off).

    ``task_type`` is ``CAUSAL_LM`` for policies and ``SEQ_CLS`` for the preference
    model (peft then also trains the new score head).

    >>> cfg = lora_config(LoraOptions(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    >>> cfg.r, cfg.lora_alpha, sorted(cfg.target_modules), cfg.task_type
    (4, 8, ['q_proj', 'v_proj'], 'CAUSAL_LM')
    >>> lora_config(LoraOptions()).target_modules, lora_config(None)
    ('all-linear', None)
    """
    if opts is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=opts.r,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        target_modules=list(opts.target_modules) if opts.target_modules else "all-linear",
        task_type=task_type,
    )


def set_pad_token(tokenizer: Any, token: str) -> None:
    """Use ``token`` (already in the vocabulary, and not the EOS token) for padding."""
    if token not in tokenizer.get_vocab():
        raise CaiError(f"pad token {token!r} is not in the tokenizer's vocabulary",
                       hint="name an existing token, e.g. '<|endoftext|>' or the model's unk token")
    if token == tokenizer.eos_token:
        raise CaiError(f"pad token {token!r} is the EOS token", hint="name a different existing token")
    tokenizer.pad_token = token


def check_pad_token(tokenizer: Any, model_name: str) -> None:
    """Refuse a tokenizer whose pad token is missing or equal to EOS.

    A preference model reads its score at the last non-pad token; when pad == EOS
    the final EOS is mistaken for padding.
    """
    pad, eos = tokenizer.pad_token, tokenizer.eos_token
    if pad is None or pad == eos:
        vocab = tokenizer.get_vocab()
        candidates = [t for t in ("<|endoftext|>", "<pad>", "<unk>", tokenizer.unk_token)
                      if t and t != eos and t in vocab]
        example = candidates[0] if candidates else "<|endoftext|>"
        what = "has no pad token" if pad is None else f"pads with its EOS token {eos!r}"
        raise CaiError(f"the tokenizer of {model_name} {what}: a preference model would read its score "
                       "at the wrong token",
                       hint=f"pass --pad-token TOKEN naming an existing token other than EOS, e.g. "
                            f"--pad-token '{example}'")


def load_tokenizer(name: str, *, pad_token: str | None = None, chat_template: str | None = None,
                   trust_remote_code: bool = False, padding_side: str = "right") -> Any:
    """The model's tokenizer for training: right padding, a pad token, and a chat template."""
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, resolve_model(name), name, trust_remote_code=trust_remote_code)
    if chat_template:
        from cai.backends.hf.loading import read_chat_template

        tok.chat_template = read_chat_template(chat_template)
    if not getattr(tok, "chat_template", None):
        raise CaiError(f"model {name} has no chat template",
                       hint="use an instruction-tuned model, or pass --chat-template FILE with a "
                            "Jinja template")
    if pad_token:
        set_pad_token(tok, pad_token)
    elif tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def model_dtype(dtype: str | None = None) -> Any:
    """The torch dtype to train in: fp32 on CPU, bf16/fp16 on a GPU, or what the user named.

    ``int8`` is for generation only (:mod:`cai.backends.hf.quantize`): training ignores it, with a warning,
    and uses the default.

    >>> model_dtype("int8") == model_dtype(None)
    True
    """
    if is_int8(dtype):
        default = str(model_dtype(None)).split(".")[-1]
        logging.getLogger(__name__).warning("dtype int8 is for generation only: training in %s instead",
                                            default)
        dtype = None
    return pick_dtype(pick_device(None), dtype)


def load_causal_lm(name: str, *, dtype: str | None = None, trust_remote_code: bool = False) -> Any:
    """A causal LM to train (train mode, on CPU; the Trainer moves it)."""
    from transformers import AutoModelForCausalLM

    model = from_pretrained(AutoModelForCausalLM, resolve_model(name), name,
                             dtype=model_dtype(dtype), trust_remote_code=trust_remote_code)
    return model


def load_reward_model(name: str, tokenizer: Any, *, dtype: str | None = None,
                      trust_remote_code: bool = False) -> Any:
    """A one-output sequence-classification model (the preference model) on ``name``.

    From a causal LM (the SFT or base model) the score head is new; from a saved
    preference model it is loaded. The tokenizer's pad token must not be EOS.
    """
    from transformers import AutoModelForSequenceClassification

    check_pad_token(tokenizer, name)
    model = from_pretrained(AutoModelForSequenceClassification, resolve_model(name), name, num_labels=1,
                             dtype=model_dtype(dtype), trust_remote_code=trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
