"""Safety of configs: YAML is plain data everywhere, and model code runs only when the user says so.

* Every YAML that cai reads (constitutions, recipes, eval specs, trainer
  ``--config``/``--set``, accelerate profiles) refuses Python tags and other
  constructors, and nothing they name is executed (a marker file a payload would
  create stays absent). A scan of the source finds no unsafe YAML loader.
* ``trust_remote_code`` is passed to transformers as ``False`` unless the user
  passed ``--trust-remote-code``: checked on the real loading paths (``from_pretrained``
  wrapped to record its keywords) and by a scan of the source for a literal
  ``True`` or a ``True`` default.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from cai.core.errors import CaiError
from tests.helpers.paths import ROOT

SOURCES = sorted((ROOT / "cai").rglob("*.py"))


def payloads(marker: Path) -> list[str]:
    """YAML documents that would run code (create ``marker``) under an unsafe loader."""
    cmd = f"touch {marker}"
    return [
        f"name: !!python/object/apply:os.system ['{cmd}']\n",
        f"name: !!python/object/apply:subprocess.call [['touch', '{marker}']]\n",
        "name: !!python/name:os.system\n",
        f"name: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "!!python/object:cai.core.errors.CaiError {message: x}\n",
        "name: !custom_tag x\n",
    ]


def _loaders(tmp_path: Path):
    from cai.constitution.load import load_constitution
    from cai.train.common.config import load_config_file, parse_set
    from cai.train.common.launch import resolve_config

    def recipe(path: Path):
        from cai.run.load import load_recipe

        return load_recipe(path)

    def eval_spec(path: Path):
        from cai.eval.spec import load_spec

        return load_spec(path)

    def set_option(path: Path):
        return parse_set("beta=" + path.read_text().partition(":")[2].strip())

    return {"constitution": load_constitution, "recipe": recipe, "eval-spec": eval_spec,
            "train-config": load_config_file, "train-set": set_option,
            "accelerate-profile": lambda p: resolve_config(str(p), 1, gpus=0)}


@pytest.mark.parametrize("kind", ["constitution", "recipe", "eval-spec", "train-config", "train-set",
                                  "accelerate-profile"])
def test_yaml_with_python_tags_is_refused_and_runs_nothing(tmp_path, kind):
    if kind == "eval-spec":
        pytest.importorskip("cai.eval.spec")
    if kind == "recipe":
        pytest.importorskip("cai.run.load")
    load = _loaders(tmp_path)[kind]
    marker = tmp_path / "PWNED"
    for n, text in enumerate(payloads(marker)):
        path = tmp_path / f"{kind}-{n}.yaml"
        path.write_text(text)
        try:
            load(path)
        except CaiError as exc:
            assert "\n" not in str(exc)
        else:
            # --set reads a plain value: a tag that fails is fine, one that loads is not
            if kind != "train-set":
                pytest.fail(f"{kind}: {text!r} was accepted")
        assert not marker.exists(), f"{kind}: {text!r} ran code"


def test_no_unsafe_yaml_loader_in_the_source():
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in (
                "load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all",
                "Loader", "UnsafeLoader", "FullLoader", "UnsafeConstructor", "FullConstructor",
            ) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: yaml.{node.attr}")
    assert bad == []


def test_trust_remote_code_is_never_true_in_the_source():
    """No call passes ``trust_remote_code=True`` and no function defaults it to True."""
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is not False:
                    bad.append(f"{path.relative_to(ROOT)}:{node.value.lineno}: passes {node.value.value!r}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                pos = args.posonlyargs + args.args
                pairs = list(zip(pos[len(pos) - len(args.defaults):], args.defaults))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
                for arg, default in pairs:
                    if arg.arg == "trust_remote_code" and not (
                        isinstance(default, ast.Constant) and default.value is False
                        or isinstance(default, ast.Attribute)  # a typer Option object, checked below
                    ):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} defaults it to True")
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is not False:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: field defaults to "
                               f"{node.value.value!r}")
    assert bad == []
    from cai.cli import backend_options
    from cai.cli import train_options as cli_options

    for opt in (backend_options.TrustRemoteCodeOpt, cli_options.TrustRemoteCodeOpt):
        assert opt.default is False


@pytest.fixture
def recorded(monkeypatch):
    """``from_pretrained`` of the Auto classes, wrapped to record the keywords each call got."""
    import transformers

    calls: list[tuple[str, dict]] = []
    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        cls = getattr(transformers, name)
        real = cls.from_pretrained.__func__

        def wrapper(klass, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, dict(kwargs)))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(wrapper))
    return calls


@pytest.mark.parametrize("passed", [False, True])
def test_hf_backend_passes_trust_remote_code_only_when_asked(recorded, tiny_model_dir, passed):
    from cai.backends import BackendSpec

    BackendSpec(name=str(tiny_model_dir), trust_remote_code=passed).build()
    assert {name for name, _ in recorded} >= {"AutoTokenizer", "AutoModelForCausalLM"}
    assert [kw.get("trust_remote_code") for _, kw in recorded] == [passed] * len(recorded)


@pytest.mark.parametrize("passed", [False, True])
def test_trainers_pass_trust_remote_code_only_when_asked(recorded, tiny_model_dir, passed):
    from cai.train.common.models import load_causal_lm, load_reward_model, load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir), pad_token="<pad>", trust_remote_code=passed)
    load_causal_lm(str(tiny_model_dir), trust_remote_code=passed)
    load_reward_model(str(tiny_model_dir), tok, trust_remote_code=passed)
    assert len(recorded) == 3
    assert [kw.get("trust_remote_code") for _, kw in recorded] == [passed] * 3


def test_cli_default_is_off_and_the_flag_turns_it_on(recorded, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from cai.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    for flag, expected in (([], False), (["--trust-remote-code"], True)):
        recorded.clear()
        out = tmp_path / f"out{expected}.jsonl"
        monkeypatch.setattr(sys, "argv", ["cai", "generate", "-p", str(prompts), "-o", str(out), "-m",
                                          str(tiny_model_dir), "--max-new-tokens", "2", *flag])
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code in (0, None), capsys.readouterr().err
        assert recorded and all(kw.get("trust_remote_code") is expected for _, kw in recorded)
