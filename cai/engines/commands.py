"""The launch command line of each inference engine, built by one small pure function per kind.

A :class:`Checkpoint` says what to serve (a model folder or hub id, optionally LoRA
adapters served without merging, and the engine's own extra ``args``); each builder
turns it plus a loopback ``host``/``port`` into an argv. The program is named bare
(``vllm``, ``python``, ``transformers``, ``llama-server``): :mod:`cai.engines.process`
resolves it when it starts the server.

=================  ==================================================================
kind               command
=================  ==================================================================
``vllm``           ``vllm serve MODEL --host H --port P`` (+ ``--enable-lora
                   --lora-modules name=path ...``, ``--tensor-parallel-size``,
                   ``--gpu-memory-utilization``, ``--served-model-name``)
``sglang``         ``python -m sglang.launch_server --model-path MODEL --host H --port P``
                   (+ ``--enable-lora --lora-paths name=path ...``, ``--tp-size``,
                   ``--mem-fraction-static``, ``--served-model-name``)
``llama-server``   ``llama-server -m MODEL.gguf --host H --port P`` (+ ``--lora FILE``
                   per adapter (GGUF adapters, applied to every request), ``--alias``)
``transformers``   ``transformers serve MODEL --host H --port P``: the model is preloaded
                   (``FORCE_MODEL``) and every request must name it; no LoRA, no tensor
                   parallel (serve the merged folder a training stage writes)
=================  ==================================================================

The user's ``args`` go last, so they can override nothing cai sets but may add
anything else: a mapping (``{max_model_len: 4096, enforce_eager: true}`` ->
``--max-model-len 4096 --enforce-eager``; see :func:`extra_args`) or a list of
strings passed as is.

>>> ck = Checkpoint("runs/x/sft", adapters=(("sft", "runs/x/sft/adapter"),))
>>> vllm_command(ck, "127.0.0.1", 8001)  # doctest: +NORMALIZE_WHITESPACE
['vllm', 'serve', 'runs/x/sft', '--host', '127.0.0.1', '--port', '8001', '--enable-lora',
 '--lora-modules', 'sft=runs/x/sft/adapter']
>>> request_model("vllm", ck)
'sft'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cai.core.errors import CaiError

# Flags cai sets itself for every kind: a user's args may not set them again.
RESERVED = {"host", "port", "model", "model-path", "m", "lora-modules", "lora-paths", "lora", "enable-lora"}


@dataclass(frozen=True)
class Checkpoint:
    """What one server serves: ``model`` (folder, hub id or GGUF file) plus optional adapters and options.

    ``adapters`` is a tuple of ``(name, path)``; requests then go to the first adapter.
    ``args`` is the engine's own extra arguments (a mapping or a list of strings).
    """

    model: str
    adapters: tuple[tuple[str, str], ...] = ()
    served_name: str | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    args: Mapping[str, Any] | Sequence[str] | None = None

    def key(self) -> str:
        """What makes two checkpoints one server (same key: the running server is reused).

        >>> Checkpoint("m", args={"a": 1}).key() == Checkpoint("m", args={"a": 1}).key()
        True
        >>> Checkpoint("m").key() == Checkpoint("m", adapters=(("x", "p"),)).key()
        False
        """
        args = dict(self.args) if isinstance(self.args, Mapping) else list(self.args or [])
        fields = {**self.__dict__, "args": args, "adapters": [list(a) for a in self.adapters]}
        return json.dumps(fields, sort_keys=True, default=str)


def flag_name(key: str) -> str:
    """A mapping key as a command-line flag: dashes for underscores, ``-x`` kept as is.

    >>> flag_name("max_model_len"), flag_name("--max-num-seqs"), flag_name("-ngl")
    ('--max-model-len', '--max-num-seqs', '-ngl')
    """
    key = str(key).strip()
    return key if key.startswith("-") else "--" + key.replace("_", "-")


def extra_args(args: Mapping[str, Any] | Sequence[str] | None, kind: str = "engine") -> list[str]:
    """The user's extra engine arguments as argv words.

    A mapping: ``true`` is a bare flag, ``false`` its ``--no-`` form, ``null`` is left
    out, a list repeats nothing (the values follow the one flag, as argparse's
    ``nargs='+'``), a mapping is passed as JSON (vLLM's ``--hf-overrides``), anything
    else as its string. A list is passed as is. Flags cai sets itself are refused.

    >>> extra_args({"max_model_len": 4096, "enforce_eager": True, "enable_prefix_caching": False,
    ...             "seed": None, "hf_overrides": {"a": 1}, "lora_target_modules": ["q", "v"]})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['--max-model-len', '4096', '--enforce-eager', '--no-enable-prefix-caching',
     '--hf-overrides', '{"a": 1}', '--lora-target-modules', 'q', 'v']
    >>> extra_args(["-ngl", 99])
    ['-ngl', '99']
    >>> extra_args({"port": 9}, "vllm")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: engine vllm: args sets --port, which cai sets itself (fix: drop it from
    args; cai picks a free loopback port and passes the model and adapters)
    """
    if args is None:
        return []
    if isinstance(args, str):
        raise CaiError(f"engine {kind}: args must be a mapping or a list, not the string {args!r}",
                       hint="write args: {max_model_len: 4096} or args: ['--max-model-len', '4096']")
    words: list[str] = []
    if isinstance(args, Mapping):
        for key, value in args.items():
            flag = flag_name(key)
            if value is None:
                continue
            if value is True:
                words.append(flag)
            elif value is False:
                words.append("--no-" + flag.lstrip("-"))
            elif isinstance(value, Mapping):
                words += [flag, json.dumps(value)]
            elif isinstance(value, (list, tuple)):
                words += [flag, *(str(v) for v in value)]
            else:
                words += [flag, str(value)]
    else:
        words = [str(a) for a in args]
    for word in words:
        name = word.split("=", 1)[0].lstrip("-")
        if word.startswith("-") and name in RESERVED:
            raise CaiError(f"engine {kind}: args sets --{name}, which cai sets itself",
                           hint="drop it from args; cai picks a free loopback port and passes the model "
                                "and adapters")
    return words


def _refuse(kind: str, ck: Checkpoint, *fields: str) -> None:
    for name in fields:
        if getattr(ck, name):
            raise CaiError(f"engine {kind} has no option for {name}",
                           hint={"adapters": "serve the merged model folder, or use engine vllm or sglang",
                                 }.get(name, "drop it, or pass the engine's own flag in args"))


def vllm_command(ck: Checkpoint, host: str, port: int) -> list[str]:
    """``vllm serve``: adapters unmerged through ``--enable-lora --lora-modules name=path``.

    >>> vllm_command(Checkpoint("Qwen/Qwen2.5-7B-Instruct", served_name="policy", tensor_parallel_size=2,
    ...              gpu_memory_utilization=0.85, dtype="bfloat16", args={"max_model_len": 4096}),
    ...              "127.0.0.1", 8000)  # doctest: +NORMALIZE_WHITESPACE
    ['vllm', 'serve', 'Qwen/Qwen2.5-7B-Instruct', '--host', '127.0.0.1', '--port', '8000',
     '--served-model-name', 'policy', '--tensor-parallel-size', '2', '--gpu-memory-utilization', '0.85',
     '--dtype', 'bfloat16', '--max-model-len', '4096']
    """
    argv = ["vllm", "serve", ck.model, "--host", host, "--port", str(port)]
    if ck.served_name:
        argv += ["--served-model-name", ck.served_name]
    if ck.tensor_parallel_size:
        argv += ["--tensor-parallel-size", str(ck.tensor_parallel_size)]
    if ck.gpu_memory_utilization:
        argv += ["--gpu-memory-utilization", str(ck.gpu_memory_utilization)]
    if ck.dtype:
        argv += ["--dtype", ck.dtype]
    if ck.trust_remote_code:
        argv.append("--trust-remote-code")
    if ck.adapters:
        argv += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in ck.adapters)]
    return argv + extra_args(ck.args, "vllm")


def sglang_command(ck: Checkpoint, host: str, port: int) -> list[str]:
    """``python -m sglang.launch_server``: adapters through ``--enable-lora --lora-paths name=path``.

    >>> sglang_command(Checkpoint("m", adapters=(("a", "/ad"),), tensor_parallel_size=2,
    ...                gpu_memory_utilization=0.8), "127.0.0.1", 30000)  # doctest: +NORMALIZE_WHITESPACE
    ['python', '-m', 'sglang.launch_server', '--model-path', 'm', '--host', '127.0.0.1', '--port', '30000',
     '--tp-size', '2', '--mem-fraction-static', '0.8', '--enable-lora', '--lora-paths', 'a=/ad']
    """
    argv = ["python", "-m", "sglang.launch_server", "--model-path", ck.model, "--host", host,
            "--port", str(port)]
    if ck.served_name:
        argv += ["--served-model-name", ck.served_name]
    if ck.tensor_parallel_size:
        argv += ["--tp-size", str(ck.tensor_parallel_size)]
    if ck.gpu_memory_utilization:
        argv += ["--mem-fraction-static", str(ck.gpu_memory_utilization)]
    if ck.dtype:
        argv += ["--dtype", ck.dtype]
    if ck.trust_remote_code:
        argv.append("--trust-remote-code")
    if ck.adapters:
        argv += ["--enable-lora", "--lora-paths", *(f"{n}={p}" for n, p in ck.adapters)]
    return argv + extra_args(ck.args, "sglang")


def llama_server_command(ck: Checkpoint, host: str, port: int) -> list[str]:
    """llama.cpp's ``llama-server``: a GGUF file, GGUF LoRA adapters through ``--lora`` (one each).

    >>> llama_server_command(Checkpoint("m.gguf", adapters=(("a", "a.gguf"),), args={"-ngl": 99}),
    ...                      "127.0.0.1", 8080)  # doctest: +NORMALIZE_WHITESPACE
    ['llama-server', '-m', 'm.gguf', '--host', '127.0.0.1', '--port', '8080', '--lora', 'a.gguf',
     '-ngl', '99']
    >>> llama_server_command(Checkpoint("m.gguf", tensor_parallel_size=2), "h", 1)
    ... # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: engine llama-server has no option for tensor_parallel_size (fix: drop it, or
    pass the engine's own flag in args)
    """
    _refuse("llama-server", ck, "tensor_parallel_size", "gpu_memory_utilization", "dtype",
            "trust_remote_code")
    argv = ["llama-server", "-m", ck.model, "--host", host, "--port", str(port)]
    if ck.served_name:
        argv += ["--alias", ck.served_name]
    for _, path in ck.adapters:
        argv += ["--lora", path]
    return argv + extra_args(ck.args, "llama-server")


def transformers_command(ck: Checkpoint, host: str, port: int) -> list[str]:
    """``transformers serve MODEL``: the model preloaded; requests must name it (see :func:`request_model`).

    >>> transformers_command(Checkpoint("runs/x/sft", dtype="float32", args={"device": "cpu"}),
    ...                      "127.0.0.1", 8002)  # doctest: +NORMALIZE_WHITESPACE
    ['transformers', 'serve', 'runs/x/sft', '--host', '127.0.0.1', '--port', '8002', '--dtype', 'float32',
     '--device', 'cpu']
    >>> transformers_command(Checkpoint("b", adapters=(("a", "p"),)), "h", 1)
    ... # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: engine transformers has no option for adapters (fix: serve the merged model
    folder, or use engine vllm or sglang)
    """
    _refuse("transformers", ck, "adapters", "tensor_parallel_size", "gpu_memory_utilization", "served_name")
    argv = ["transformers", "serve", ck.model, "--host", host, "--port", str(port)]
    if ck.dtype:
        argv += ["--dtype", ck.dtype]
    if ck.trust_remote_code:
        argv.append("--trust-remote-code")
    return argv + extra_args(ck.args, "transformers")


COMMANDS: dict[str, Callable[[Checkpoint, str, int], list[str]]] = {
    "vllm": vllm_command, "sglang": sglang_command, "llama-server": llama_server_command,
    "transformers": transformers_command,
}
INSTALL_HINTS = {
    "vllm": "pip install vllm (needs a GPU), or put vllm on PATH",
    "sglang": "pip install 'sglang[all]' in this environment",
    "llama-server": "build llama.cpp or install its package, and put llama-server on PATH",
    "transformers": "pip install 'transformers[serving]'",
}


def launch_command(kind: str, ck: Checkpoint, host: str, port: int) -> list[str]:
    """The argv for ``kind``; an unknown kind is a :class:`CaiError` listing the known ones.

    >>> launch_command("tgi", Checkpoint("m"), "h", 1)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    cai.core.errors.CaiError: engine 'tgi': unknown managed engine (fix: use one of: vllm, sglang,
    llama-server, transformers)
    """
    if kind not in COMMANDS:
        raise CaiError(f"engine {kind!r}: unknown managed engine", hint=f"use one of: {', '.join(COMMANDS)}")
    return COMMANDS[kind](ck, host, port)


def request_model(kind: str, ck: Checkpoint) -> str:
    """The ``model`` field requests carry: the first adapter, else the served name, else the model.

    vLLM routes a request to an adapter by its name, SGLang by ``base:adapter``;
    ``transformers serve`` refuses any name but the preloaded model's.

    >>> ad = (("sft", "p"),)
    >>> request_model("sglang", Checkpoint("b", adapters=ad)), request_model("transformers", Checkpoint("b"))
    ('b:sft', 'b')
    >>> request_model("vllm", Checkpoint("b", served_name="policy"))
    'policy'
    """
    base = ck.served_name or ck.model
    if ck.adapters and kind == "vllm":
        return ck.adapters[0][0]
    if ck.adapters and kind == "sglang":
        return f"{base}:{ck.adapters[0][0]}"
    return base
