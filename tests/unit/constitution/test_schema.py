"""Constitution schema, layering, hashing, sampling, diff and one-line errors."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai.constitution.load import load_constitution, loads_constitution
from cai.constitution.schema import Constitution, Principle, diff_constitutions, sample_principles
from cai.core.errors import CaiError
from cai.core.records import ConstitutionRef

BASE = """\
name: base
version: "1.0"
description: The base.
comparison: Which is better?
principles:
  - id: a
    critique: Point out harm.
    revision: Remove the harm.
    tags: [harm]
  - id: b
    critique: Point out lies.
    revision: Fix the lies.
    weight: 2
examples:
  - prompt: hi
    response: go away
    critique: Rude.
    revision: Hello!
    principle: b
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path, "base.yaml", BASE)


def ids(c: Constitution) -> list[str]:
    return [p.id for p in c.principles]


# --- loading and layering ------------------------------------------------------------------------


def test_load_flat(base: Path) -> None:
    c = load_constitution(base)
    assert (c.name, c.version, ids(c)) == ("base", "1.0", ["a", "b"])
    assert c.principle("b").weight == 2.0 and c.principle("a").tags == ["harm"]
    assert c.examples[0].principle == "b" and c.comparison_for(c.principle("a")) == "Which is better?"
    assert c.example_requests(c.examples[0], c.principle("a")) == ("Point out lies.", "Fix the lies.")


def test_ref_and_hash(base: Path) -> None:
    c = load_constitution(base)
    assert c.ref() == ConstitutionRef(name="base", version="1.0", hash=c.hash)
    assert len(c.hash) == 64 and int(c.hash, 16) >= 0


def test_layer_adds_overrides_and_removes(tmp_path: Path, base: Path) -> None:
    layer = write(
        tmp_path,
        "layer.yaml",
        """\
        extends: [base]
        name: layer
        remove: [b]
        principles:
          - id: a
            weight: 3
          - id: c
            critique: Point out rudeness.
            revision: Be polite.
        """,
    )
    c = load_constitution(layer)
    assert c.name == "layer" and c.version == "1.0" and c.description == "The base."
    assert ids(c) == ["a", "c"]
    a = c.principle("a")
    assert (a.weight, a.critique, a.tags) == (3.0, "Point out harm.", ["harm"])  # partial override
    assert c.examples == []  # the example tied to the removed principle goes with it
    assert not hasattr(c, "extends") and "remove" not in c.model_dump()


def test_layer_resolves_relative_dir_then_shipped(tmp_path: Path) -> None:
    write(tmp_path, "sub/local.yaml", BASE)
    mine = write(tmp_path, "sub/mine.yaml", "extends: [local.yaml, harmless]\nname: mine\n")
    c = load_constitution(mine)
    assert ids(c)[:2] == ["a", "b"] and "violence-weapons" in ids(c)
    eu = write(tmp_path, "eu2.yaml", "extends: regions/eu\nname: eu2\n")
    assert "eu-data-protection" in ids(load_constitution(eu))


def test_multiple_bases_merge_in_order(tmp_path: Path, base: Path) -> None:
    write(
        tmp_path,
        "other.yaml",
        """\
        name: other
        version: "2.0"
        principles:
          - id: b
            critique: Other lies.
            revision: Other fix.
          - id: z
            critique: Z.
            revision: Z fix.
        feedback_examples:
          - {prompt: q, chosen: good, rejected: bad}
        """,
    )
    top = write(tmp_path, "top.yaml", "extends: [base, other]\n")
    c = load_constitution(top)
    assert ids(c) == ["a", "b", "z"]
    assert c.principle("b").critique == "Other lies." and c.principle("b").weight == 1.0
    assert (c.name, c.version) == ("other", "2.0")
    assert len(c.examples) == 1 and len(c.feedback_examples) == 1


def test_diamond_does_not_duplicate_examples(tmp_path: Path, base: Path) -> None:
    write(tmp_path, "left.yaml", "extends: base\nname: left\n")
    write(tmp_path, "right.yaml", "extends: base\nname: right\n")
    c = load_constitution(write(tmp_path, "top.yaml", "extends: [left, right]\n"))
    assert len(c.examples) == 1 and c.name == "right"


def test_cycle_is_an_error_naming_the_chain(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", "extends: [y]\nname: x\n")
    write(tmp_path, "y.yaml", "name: y\nextends: [x]\n")
    with pytest.raises(CaiError, match=r"y\.yaml:2: extends: cycle x\.yaml -> y\.yaml -> x\.yaml"):
        load_constitution(tmp_path / "x.yaml")
    write(tmp_path, "self.yaml", "extends: self\n")
    with pytest.raises(CaiError, match=r"self\.yaml:1: extends: cycle self\.yaml -> self\.yaml"):
        load_constitution(tmp_path / "self.yaml")


def test_shipped_name_loads() -> None:
    assert load_constitution("harmless").name == "harmless"
    assert load_constitution("regions/eu.yaml").name == "harmless-eu"


# --- hashing -------------------------------------------------------------------------------------


def test_hash_ignores_formatting_order_and_comments(tmp_path: Path, base: Path) -> None:
    data = yaml.safe_load(BASE)
    shuffled = {k: data[k] for k in reversed(list(data))}
    shuffled["principles"] = [dict(reversed(list(p.items()))) for p in data["principles"]]
    other = tmp_path / "other.yaml"
    other.write_text("# a comment\n" + yaml.safe_dump(shuffled, default_flow_style=True, width=30))
    flow = loads_constitution(
        '{"name": "base", "version": "1.0", "description": "  The base.\\n", "comparison": '
        '"Which is better?","principles": [{"id": "a", "critique": "Point out harm.", "revision": "Remove '
        'the harm.", "tags": ["harm"]},{"id": "b", "critique": "Point out lies.", "revision": "Fix the '
        'lies.", "weight": 2.0}],"examples": [{"prompt": "hi", "response": "go away", "critique": "Rude.", '
        '"revision": "Hello!","principle": "b"}]}'
    )
    assert load_constitution(base).hash == load_constitution(other).hash == flow.hash


@pytest.mark.parametrize(
    "old, new",
    [
        ("Point out harm.", "Point out any harm."),
        ("weight: 2", "weight: 2.5"),
        ('version: "1.0"', 'version: "1.1"'),
        ("tags: [harm]", "tags: [harm, x]"),
        ("    principle: b\n", ""),
    ],
)
def test_any_change_gives_a_new_hash(tmp_path: Path, base: Path, old: str, new: str) -> None:
    assert old in BASE
    changed = write(tmp_path, "changed.yaml", BASE.replace(old, new))
    assert load_constitution(changed).hash != load_constitution(base).hash


def test_layered_equals_flat(tmp_path: Path, base: Path) -> None:
    layer = write(
        tmp_path,
        "layer.yaml",
        "extends: base\nname: layered\nprinciples:\n  - id: a\n    weight: 5\n",
    )
    flat = write(
        tmp_path,
        "flat.yaml",
        BASE.replace("name: base", "name: layered").replace(
            "    tags: [harm]", "    tags: [harm]\n    weight: 5"
        ),
    )
    assert load_constitution(layer).hash == load_constitution(flat).hash


def test_shipped_layer_equals_its_resolved_yaml(tmp_path: Path) -> None:
    eu = load_constitution("regions/eu")
    flat = tmp_path / "eu-flat.yaml"
    flat.write_text(eu.to_yaml())
    assert load_constitution(flat).hash == eu.hash


# --- sampling ------------------------------------------------------------------------------------


def _two(weight_b: float) -> Constitution:
    return Constitution(
        name="t",
        version="1",
        principles=[
            Principle(id="a", critique="c", revision="r"),
            Principle(id="b", critique="c", revision="r", weight=weight_b),
        ],
    )


def test_sample_is_deterministic_per_seed() -> None:
    c = load_constitution("harmless")
    first = [p.id for p in sample_principles(c, random.Random(42), 20)]
    assert first == [p.id for p in sample_principles(c, random.Random(42), 20)]
    assert first != [p.id for p in sample_principles(c, random.Random(43), 20)]


def test_sample_k_and_replacement() -> None:
    c = _two(1.0)
    assert sample_principles(c, random.Random(0), 0) == []
    assert len(sample_principles(c, random.Random(0), 50)) == 50  # more than there are principles
    assert len(sample_principles(c, random.Random(0))) == 1
    with pytest.raises(ValueError):
        sample_principles(c, random.Random(0), -1)


def test_sample_respects_weights() -> None:
    counts = Counter(p.id for p in sample_principles(_two(3.0), random.Random(1), 20_000))
    assert 0.72 < counts["b"] / 20_000 < 0.78
    tiny = Counter(p.id for p in sample_principles(_two(1e-9), random.Random(1), 20_000))
    assert tiny["b"] == 0


# --- diff ----------------------------------------------------------------------------------------


def test_diff_principle_level() -> None:
    harmless, eu = load_constitution("harmless"), load_constitution("regions/eu")
    d = diff_constitutions(harmless, eu)
    assert d.added == ["eu-data-protection", "eu-data-rights", "eu-ai-transparency"]
    assert d.removed == ["privacy"]
    assert d.changed == {"hate-harassment": ["critique", "tags"]}
    assert d.fields == ["name", "description"] and not d.reordered
    assert diff_constitutions(eu, eu).empty


# --- bad input: one CaiError line with file and line ---------------------------------------------

GOOD_PRINCIPLE = "  - id: a\n    critique: c\n    revision: r\n"
HEAD = 'name: x\nversion: "1"\nprinciples:\n'

BAD = {
    "malformed": (HEAD + "  - id: a\n    critique: c\n   revision: r\n", 6, "malformed YAML"),
    "unknown-field": (
        HEAD + GOOD_PRINCIPLE + "  - id: b\n    critque: c\n    revision: r\n",
        8,
        "principles.1.critque: Extra inputs",
    ),
    "unknown-top": ("nmae: x\n" + HEAD + GOOD_PRINCIPLE, 1, "nmae: Extra inputs"),
    "wrong-type": (
        HEAD + "  - id: a\n    critique: [1, 2]\n    revision: r\n",
        5,
        "principles.0.critique: Input should be a valid string",
    ),
    "bad-weight": (
        HEAD + GOOD_PRINCIPLE + "    weight: 0\n",
        7,
        "principles.0.weight: Input should be greater than 0",
    ),
    "float-version": (
        "name: x\nversion: 1.0\nprinciples:\n" + GOOD_PRINCIPLE,
        2,
        'quote it, e.g. version: "1.0"',
    ),
    "duplicate-id": (
        HEAD + GOOD_PRINCIPLE + GOOD_PRINCIPLE,
        7,
        "duplicate principle id 'a' (first at line 4)",
    ),
    "duplicate-key": (HEAD + GOOD_PRINCIPLE + "name: y\n", 7, "name: duplicate key (first at line 1)"),
    "no-principles": (HEAD.replace("principles:\n", "principles: []\n"), 3, "at least one principle"),
    "missing-field": (
        HEAD + GOOD_PRINCIPLE + "  - id: b\n    critique: c\n",
        7,
        "principles[b].revision: Field required",
    ),
    "empty": ("", 1, "empty file"),
    "comments-only": ("# nothing here\n", 1, "empty file"),
    "not-a-mapping": ("- a\n- b\n", 1, "expected a mapping"),
    "python-tag": ("name: !!python/object/apply:os.system ['echo hi']\n", 1, "YAML tag not allowed"),
    "unknown-example-ref": (
        HEAD
        + GOOD_PRINCIPLE
        + "examples:\n  - {prompt: q, response: r, critique: c, revision: v, principle: zz}\n",
        7,
        "unknown principle id 'zz'",
    ),
    "bad-role": (
        HEAD
        + GOOD_PRINCIPLE
        + "examples:\n  - prompt: [{role: bot, content: hi}]\n    response: r\n    critique: c\n"
        "    revision: v\n",
        8,
        "examples.0.prompt.0.role",
    ),
    "recursive-alias": ("name: &a [*a]\n", 1, "recursive YAML alias"),
    "missing-base": ("extends: [nowhere]\nname: x\n", 1, "extends: cannot find 'nowhere'"),
    "unknown-remove": (
        "extends: [harmless]\nremove:\n  - violence-weapons\n  - nope\n",
        4,
        "remove: unknown principle id 'nope'",
    ),
    "remove-without-base": ("remove: [a]\n" + HEAD + GOOD_PRINCIPLE, 1, "unknown principle id 'a'"),
    "incomplete-new-in-layer": (
        "extends: harmless\nprinciples:\n  - id: new-one\n    critique: c\n",
        3,
        "principles[new-one].revision: Field required",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_with_file_and_line(tmp_path: Path, case: str) -> None:
    text, line, fragment = BAD[case]
    path = write(tmp_path, f"{case}.yaml", text)
    with pytest.raises(CaiError) as info:
        load_constitution(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message and "\n" not in message


def test_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b'name: x\nversion: "1"\ndescription: caf\xe9\n')
    with pytest.raises(CaiError, match=r"latin1\.yaml:3: not valid UTF-8"):
        load_constitution(path)


def test_file_not_found_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaiError, match=r"nope\.yaml: file not found"):
        load_constitution(tmp_path / "nope.yaml")
    with pytest.raises(CaiError, match="file not found .*harmless"):
        load_constitution("no-such-constitution")
    with pytest.raises(CaiError, match="is a directory"):
        load_constitution(tmp_path)


def test_error_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", HEAD + "  - id: a\n    critique: c\n    revision: r\n    wieght: 2\n")
    top = write(tmp_path, "top.yaml", "extends: broken\n")
    with pytest.raises(CaiError, match=r"broken\.yaml:7: principles\.0\.wieght"):
        load_constitution(top)


def test_billion_laughs_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(CaiError, match="YAML too large"):
        loads_constitution("\n".join(lines), "laughs.yaml")


# --- property: the loader only ever raises CaiError ----------------------------------------------

_TOKENS = [
    "name",
    "version",
    "principles",
    "id",
    "critique",
    "revision",
    "weight",
    "tags",
    "extends",
    "remove",
    "examples",
    "feedback_examples",
    "prompt",
    "response",
    "chosen",
    "rejected",
    "principle",
    "comparison",
    "- ",
    ": ",
    "\n",
    "  ",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!python/object:os.system",
    "'",
    '"',
    "1.0",
    "null",
    "-1",
    "<<",
    "harmless",
    "\t",
    "---",
    "#",
]
_yamlish = st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=4)), max_size=40).map("".join)
_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8), st.sampled_from(_TOKENS)
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_TOKENS[:18]), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_yamlish, st.text(), st.binary(), _json.map(yaml.safe_dump)))
def test_loader_raises_only_cai_error(data: str | bytes) -> None:
    try:
        c = loads_constitution(data, "fuzz.yaml")
    except CaiError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(c, Constitution)
