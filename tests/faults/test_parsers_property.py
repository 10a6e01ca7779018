"""Property tests: random YAML and JSON fed to every parser raise only the project's own errors.

The constitution loader and the prompt reader have their own in
``test_constitution.py`` and ``test_io.py``; here: the record readers of every
stage's files, the ``--responses``/preference-file reader, resuming a writer on
a random file, the recipe loader, the eval spec loader and trainer configs. Any
exception other than :class:`cai.core.errors.CaiError` (a ``KeyError``, a
``TypeError`` from a validator...) is a bug: it would print a traceback.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai.core.errors import CaiError
from cai.core.jsonl import JsonlWriter, read_prompts, read_records
from cai.core.records import CompletionRecord, LabelRecord, PreferenceRecord, RevisionRecord, SFTRecord

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = ["id", "prompt", "completion", "chosen", "rejected", "p_chosen", "weight", "source",
          "role", "content", "provenance", "metadata", "status", "p_a", "judgements", "principle_ids",
          "answer", "rounds", "kind", "schema_version", "label", "sample_index", "prompt_id", "pair_id",
          "answer_a", "answer_b", "finish_reason", "model", "seed", "sampling", "name", "version", "hash",
          "user", "assistant", "system"]
scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=6) \
    | st.sampled_from(FIELDS)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                      | st.dictionaries(st.sampled_from(FIELDS), kids, max_size=4), max_leaves=12)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot"]),
                                 "content": st.text(max_size=5) | st.integers()})
recordish = st.fixed_dictionaries(
    {}, optional={k: values | st.lists(message, max_size=2) | st.text(max_size=4) for k in FIELDS[:20]})
json_line = recordish.map(json.dumps) | values.map(json.dumps) | st.text(max_size=20)
jsonl = st.lists(json_line, max_size=5).map(lambda ls: "\n".join(ls) + "\n") | st.binary(max_size=80).map(
    lambda b: b.decode("latin-1"))


def write(text: str | bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / "f.jsonl"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


def only_cai_error(fn, *args) -> None:
    try:
        fn(*args)
    except CaiError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(text=jsonl, model=st.sampled_from([CompletionRecord, LabelRecord, PreferenceRecord, RevisionRecord,
                                          SFTRecord]))
def test_record_readers_raise_only_cai_error(text, model):
    only_cai_error(read_records, write(text), model)


@SETTINGS
@given(text=jsonl)
def test_prompt_reader_with_ids_raises_only_cai_error(text):
    only_cai_error(read_prompts, write(text))


@SETTINGS
@given(lines=st.lists(recordish.map(json.dumps) | st.text(max_size=10), min_size=1, max_size=4),
       pairing=st.sampled_from(["all", "disjoint"]))
def test_responses_and_preference_reader_raises_only_cai_error(lines, pairing):
    from cai.stages.label.pairs import read_pairs_file

    only_cai_error(read_pairs_file, write("\n".join(lines) + "\n"), pairing)


pair = st.fixed_dictionaries({"prompt": st.text(max_size=4) | st.lists(message, max_size=2),
                              "chosen": st.text(max_size=4) | st.lists(message, max_size=2),
                              "rejected": st.text(max_size=4) | st.lists(message, max_size=2)},
                             optional={"p_chosen": scalars, "weight": scalars, "source": scalars,
                                       "id": scalars})


@SETTINGS
@given(pairs=st.lists(pair.map(json.dumps), min_size=1, max_size=4))
def test_pair_shaped_files_raise_only_cai_error(pairs):
    from cai.stages.label.pairs import read_pairs_file

    only_cai_error(read_pairs_file, write("\n".join(pairs) + "\n"))


@SETTINGS
@given(text=jsonl | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_resuming_a_writer_on_any_file_raises_only_cai_error(text):
    path = write(text)
    try:
        with JsonlWriter(path) as w:
            w.write({"id": "new-record"})
    except CaiError as exc:
        assert "\n" not in str(exc)
    assert not path.with_name(path.name + ".lock").exists()


KEYS = ["name", "model", "constitution", "prompts", "redteam", "helpful", "critique", "rounds",
        "sft", "label", "answers", "rm", "policy", "method", "eval", "train", "max_steps", "config", "lora",
        "variants", "base_url", "backend", "run_dir", "limit", "benign", "hub", "extends", "suites", "judge",
        "trust_remote_code"]
yaml_values = st.recursive(scalars | st.sampled_from(KEYS),
                           lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS), kids, max_size=4), max_leaves=15)
TOKENS = [*KEYS, ": ", "\n", "  ", "- ", "[", "]", "{", "}", "&a ", "*a", "!!python/name:os.system", "'", '"',
          "---", "#", "<<: ", "null", "1e9", "-1"]
yaml_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=30).map("".join) \
    | yaml_values.map(lambda d: yaml.safe_dump(d, sort_keys=False)) \
    | st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=5).map(yaml.safe_dump)


@SETTINGS
@given(text=yaml_text)
def test_recipe_loader_raises_only_cai_error(text):
    load_recipe = pytest.importorskip("cai.run.load").load_recipe
    path = Path(tempfile.mkdtemp()) / "r.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_cai_error(load_recipe, path)


@SETTINGS
@given(text=yaml_text)
def test_eval_spec_loader_raises_only_cai_error(text):
    load_spec = pytest.importorskip("cai.eval.spec").load_spec
    path = Path(tempfile.mkdtemp()) / "s.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_cai_error(load_spec, path)


@SETTINGS
@given(text=yaml_text, item=st.text(max_size=20))
def test_trainer_config_and_set_raise_only_cai_error(text, item):
    from cai.train.common.config import load_config_file, parse_set

    path = Path(tempfile.mkdtemp()) / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    only_cai_error(load_config_file, path)
    only_cai_error(parse_set, item)
