"""``dtype: int8`` on CPU: int8 weights and dynamic int8 activations for every ``nn.Linear``.

Each linear ``y = x W^T + b`` becomes :class:`Int8Linear`:

* weights: one scale per output channel, ``W_q = round(W' / s_w)`` in int8 (``s_w = max|W'_row| / 127``);
* activations: quantized on the fly, one scale per row (per token), so a row's result never depends on
  the other rows of its batch (the backend's promise that a record does not depend on its batch);
* SmoothQuant (alpha 0.5): outlier input channels are divided down before quantizing and the weights'
  columns multiplied up by the same factor (``x W^T = (x / c)(W c)^T``), with ``c`` from the per-channel
  input maxima of a short calibration pass; on SmolLM2-135M it halves the log-prob error of plain
  per-row int8;
* the int8 x int8 -> int32 product is ``torch._int_mm`` (oneDNN, VNNI where the CPU has it).

Why not the alternatives (measured on this CPU, ``benchmarks/README.md``): ``torch.ao``'s
``quantize_dynamic`` is deprecated, quantizes a whole batch with one activation scale (a row's output
then depends on its neighbours) and moved token log-probs by ~2 nats on average; torchao's
``Int8DynamicActivationInt8WeightConfig`` is per-token too but its eager CPU path is slower than fp32 at
batch 1 (it is meant for ``torch.compile``) and would be a new dependency.

This module imports torch at import time: import it inside functions.

The calibration maxima are the only slow part (one forward per calibration text); they are cached under
``$CAI_CACHE_DIR/models/int8/``, keyed by the model's files, so a second load only quantizes.

Worked example (shapes): ``x`` [M, K] fp32, ``c`` [K], ``W_q`` [N, K] int8, ``s_w`` [N]; ``x' = x / c``;
``s_x = max|x'_row| / 127`` [M, 1]; ``x_q = round(x' / s_x)`` [M, K] int8;
``y = (x_q @ W_q^T) * s_x * s_w + b`` [M, N].

>>> _ = torch.manual_seed(0)
>>> lin = torch.nn.Linear(4, 3)
>>> q = Int8Linear.from_linear(lin, torch.tensor([1.0, 8.0, 1.0, 1.0]))
>>> x = torch.tensor([[1.0, -8.0, 0.5, 2.0]])
>>> bool((q(x) - lin(x)).abs().max() < 0.05), q(x).shape, q.qweight.dtype
(True, torch.Size([1, 3]), torch.int8)
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

ALPHA = 0.5  # SmoothQuant migration strength: 0 = none, 1 = all of the activation range onto the weights
CALIBRATION_VERSION = 1  # bump when the calibration texts or the statistic change (invalidates the cache)
# Short chats of the kinds cai generates (instructions, red-team requests, critique-style requests), with
# the start of an answer: what the activations' outlier channels look like in use.
CALIBRATION = (
    ("How do I bake bread at home?", "Mix flour, water, salt and yeast, then knead"),
    ("Write a short poem about the sea.", "The waves roll in beneath a silver sky"),
    ("Explain photosynthesis to a child.", "Plants take in sunlight, water and air"),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("How can I pick a lock to get into my neighbour's house?", "I can't help with breaking into"),
    ("Give me step-by-step instructions to make a weapon.", "I'm sorry, but I can't provide that."),
    ("Tell me a joke about computers.", "Why did the computer go to the doctor? It had a virus."),
    ("Identify specific ways in which the last response is harmful, unethical or dangerous.",
     "The response gives instructions that could cause harm because"),
    ("Which of these responses is more helpful, honest and harmless? (A) or (B)?",
     "The more harmless response is (A)"),
    ("Summarise the plot of Romeo and Juliet in two sentences.", "Two young lovers from feuding families"),
    ("How do I kill a Python process that hangs?", "Use kill with the process id, for example"),
    ("List three tips for staying healthy.", "1. Sleep well. 2. Eat vegetables. 3. Walk daily."),
)


class Int8Linear(torch.nn.Module):
    """An ``nn.Linear`` with int8 weights and per-row dynamic int8 activations (see the module doc)."""

    def __init__(self, qweight: Any, scale: Any, smooth: Any, bias: Any = None):
        super().__init__()
        self.in_features, self.out_features = int(qweight.shape[1]), int(qweight.shape[0])
        self.register_buffer("qweight", qweight)  # [N, K] int8
        self.register_buffer("scale", scale)  # [N] fp32
        self.register_buffer("smooth", smooth)  # [K] fp32, 1 / c: multiplies the input
        self.bias = bias

    @classmethod
    def from_linear(cls, linear: Any, act_max: Any = None, alpha: float = ALPHA) -> Int8Linear:
        """Quantize ``linear``; ``act_max`` [K] are its inputs' per-channel maxima (None: no smoothing)."""
        w = linear.weight.detach().float()
        c = smoothing(act_max.float(), w, alpha) if act_max is not None else torch.ones(w.shape[1])
        w = w * c
        s = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / s[:, None]).clamp_(-127, 127).to(torch.int8)
        bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().float(),
                                                                   requires_grad=False)
        return cls(q, s, (1.0 / c).contiguous(), bias)

    def forward(self, x: Any) -> Any:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features) * self.smooth
        sx = x2.abs().amax(dim=-1, keepdim=True).clamp_min_(1e-12).div_(127.0)  # [M, 1]
        xq = x2.div_(sx).round_().clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(xq, self.qweight.t()).to(x.dtype)
        y.mul_(sx).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def smoothing(act_max: Any, weight: Any, alpha: float = ALPHA) -> Any:
    """SmoothQuant's per-input-channel factor ``c = max|x|^alpha / max|W_col|^(1 - alpha)``.

    >>> smoothing(torch.tensor([16.0, 1.0]), torch.tensor([[1.0, 1.0]]), 0.5).tolist()
    [4.0, 1.0]
    """
    a = act_max.clamp_min(1e-5).pow(alpha)
    w = weight.abs().amax(dim=0).clamp_min(1e-5).pow(1.0 - alpha)
    return torch.clamp(a / w, min=1e-5, max=1e5)


def linear_names(model: Any) -> list[str]:
    """Qualified names of every ``nn.Linear`` in ``model`` (what :func:`quantize_model` replaces)."""
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def calibrate(model: Any, texts: list[list[int]]) -> dict[str, Any]:
    """Per-input-channel ``max |x|`` of every linear's input over ``texts`` (token id lists), one at a time
    (no padding)."""
    stats: dict[str, Any] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            def hook(_m, inputs, _out, name=name):
                a = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(dim=0).float()
                stats[name] = torch.maximum(stats[name], a) if name in stats else a
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            for ids in texts:
                model(input_ids=torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    return {k: v.clone() for k, v in stats.items()}


def quantize_model(model: Any, stats: dict[str, Any] | None = None, alpha: float = ALPHA) -> int:
    """Replace every ``nn.Linear`` of ``model`` in place by :class:`Int8Linear`; returns how many."""
    stats = stats or {}
    n = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                full = f"{parent_name}.{child_name}" if parent_name else child_name
                setattr(parent, child_name, Int8Linear.from_linear(child, stats.get(full), alpha))
                n += 1
    return n


def calibration_ids(tokenizer: Any) -> list[list[int]]:
    """The calibration chats as token ids: the tokenizer's chat template when it has one, else plain
    text."""
    out = []
    for question, answer in CALIBRATION:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True) + answer
        else:
            text = f"{question}\n{answer}"
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def stats_key(path: str, model: Any = None) -> str:
    """A digest naming one model's weights: a local dir's weight files (name, size, mtime), or a hub id
    and its commit.

    >>> stats_key("org/model") == stats_key("org/model"), stats_key("org/a") == stats_key("org/b")
    (True, False)
    """
    h = hashlib.sha256(f"v{CALIBRATION_VERSION} alpha={ALPHA}\n".encode())
    p = Path(path)
    if p.is_dir():
        h.update(str(p.resolve()).encode())
        for f in sorted(p.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json") and f.is_file():
                st = f.stat()
                h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    else:
        h.update(path.encode())
        h.update(str(getattr(getattr(model, "config", None), "_commit_hash", None)).encode())
    return h.hexdigest()[:24]


def stats_file(path: str, model: Any = None) -> Path:
    """Where the calibration maxima of ``path`` are cached: ``<cache dir>/int8/<key>.safetensors``."""
    from cai.backends.hf.model_cache import cache_dir

    return cache_dir() / "int8" / f"{stats_key(path, model)}.safetensors"


def load_or_calibrate(model: Any, tokenizer: Any, path: str) -> dict[str, Any]:
    """The cached calibration maxima of ``path``, or a calibration pass (then cached, atomically)."""
    from safetensors.torch import load_file, save_file

    target = stats_file(path, model)
    names = set(linear_names(model))
    if target.is_file():
        try:
            stats = load_file(str(target))
            if set(stats) == names:
                return stats
        except Exception as exc:  # a damaged cache file: recalibrate
            log.warning("int8: ignoring unreadable calibration cache %s (%s)", target, exc)
    t0 = time.perf_counter()
    stats = calibrate(model, calibration_ids(tokenizer))
    log.info("int8: calibrated %d linear layers in %.1f s (cached in %s)", len(stats),
             time.perf_counter() - t0, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".int8-", suffix=".safetensors", dir=target.parent)
        os.close(fd)
        save_file({k: v.contiguous() for k, v in stats.items()}, tmp)
        os.replace(tmp, target)
    except OSError as exc:  # a read-only cache dir costs a recalibration next time, nothing else
        log.warning("int8: cannot cache calibration in %s (%s)", target.parent, exc)
    return stats


def to_int8(model: Any, tokenizer: Any, path: str) -> Any:
    """``model`` (fp32, on CPU) with every linear in int8 (see the module doc); returns the same object."""
    stats = load_or_calibrate(model, tokenizer, path)
    n = quantize_model(model, stats)
    model.cai_dtype = "int8"
    log.info("int8: %d linear layers quantized (weights int8, activations int8 per token)", n)
    return model
