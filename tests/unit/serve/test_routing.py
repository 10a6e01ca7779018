"""The routing table: each mistake is one ``file:line: field: message`` line; pick_layer's choices."""

from __future__ import annotations

import textwrap

import pytest

from cai.core.errors import CaiError
from cai.serve.routing import RequestContext, load_routes, pick_layer


@pytest.fixture
def models(tmp_path):
    for name in ("core", "eu", "us", "ad"):
        (tmp_path / name).mkdir()
    return tmp_path


def write(folder, text: str):
    path = folder / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
    layers:
      core: core
      eu: {model: eu}
      us: us
    rules:
      - header: X-User-Region
      - metadata: region
        map: {europe: eu}
      - locale: {de: eu, en-us: us}
    """


def test_a_good_table_resolves_paths_against_the_file(models):
    table = load_routes(write(models, GOOD))
    assert table.core == "core" and table.default_layer == "core"
    assert table.layers["eu"].model == str((models / "eu").resolve())
    assert [r.source for r in table.rules] == ["header X-User-Region", "metadata.region", "locale"]


@pytest.mark.parametrize(("text", "needles"), [
    ("layers: {core: core}\nrules:\n  - heder: X-User-Region\n",
     ["routes.yaml:3", "rules.0.heder", "not permitted"]),
    ("layers: {core: core}\nrules:\n  - header: X-User-Region\n    metadata: region\n",
     ["routes.yaml:3", "rules.0", "exactly one of header, metadata, locale (got 2)"]),
    ("layers: {core: core}\nrules:\n  - {}\n", ["routes.yaml:3", "rules.0", "(got 0)"]),
    ("layers:\n  core: core\nrules:\n  - header: X\n    map:\n      de: eu\n",
     ["routes.yaml:6", "rules.0.map.de", "'eu' is not a layer", "use one of: core"]),
    ("layers:\n  core: core\nrules:\n  - locale: {de: apac}\n",
     ["routes.yaml:4", "rules.0.locale.de", "'apac' is not a layer"]),
    ("core: main\nlayers: {core: core}\n", ["routes.yaml:1", "core: 'main' is not a layer"]),
    ("layers: {core: core}\ndefault: eu\n", ["routes.yaml:2", "default: 'eu' is not a layer"]),
    ("layers:\n  core: core\n  eu: eu/model\n", ["routes.yaml:3", "layers.eu.model", "does not exist"]),
    ("layers:\n  core: {adapter: ad}\n", ["routes.yaml:2", "layers.core", "the core layer needs a model"]),
    ("layers:\n  core: core\n  eu: {}\n", ["routes.yaml:3", "layers.eu", "needs model: or adapter:"]),
    ("layers: {}\n", ["routes.yaml:1", "layers: no layers"]),
    ("layers: [core]\n", ["routes.yaml:1", "layers"]),
    ("layers: {core: core\n", ["routes.yaml:", "malformed YAML"]),
    ("- core\n", ["routes.yaml: expected a mapping"]),
])
def test_each_mistake_is_one_line_naming_file_line_and_field(models, text, needles):
    with pytest.raises(CaiError) as err:
        load_routes(write(models, text))
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_run_folder_layers_and_default_rules(tmp_path):
    run = tmp_path / "run"
    (run / "core" / "model").mkdir(parents=True)
    (run / "core" / "model" / "config.json").write_text("{}")
    (run / "regions" / "eu" / "adapter").mkdir(parents=True)
    (run / "regions" / "eu" / "adapter" / "adapter_config.json").write_text("{}")
    table = load_routes(None, run)
    assert table.layers["core"].model == str((run / "core" / "model").resolve())
    assert table.layers["eu"].model is None and table.layers["eu"].adapter.endswith("regions/eu/adapter")
    assert pick_layer(table, RequestContext({"x-user-region": "eu"}))[0] == "eu"
    with pytest.raises(CaiError, match="needs --routes ROUTES.yaml or --run RUN_DIR"):
        load_routes(None, None)
    with pytest.raises(CaiError, match="no core/model or regions"):
        load_routes(None, tmp_path / "empty")


@pytest.mark.parametrize(("headers", "body", "layer", "reason"), [
    ({"x-user-region": "eu"}, {}, "eu", "header X-User-Region=eu"),
    ({"x-user-region": "US"}, {"metadata": {"region": "eu"}}, "us", "header X-User-Region=US"),  # first rule
    ({}, {"metadata": {"region": "Europe"}}, "eu", "metadata.region=Europe"),
    ({}, {"metadata": {"region": "eu"}}, "core", "unknown region 'eu' (metadata.region): core layer"),
    ({"accept-language": "de-AT;q=0.8, en-US"}, {}, "us", "locale en-US (Accept-Language)"),
    ({"accept-language": "de-AT"}, {}, "eu", "locale de-AT (Accept-Language)"),
    ({"accept-language": "ja-JP"}, {"locale": "de_CH"}, "eu", "locale de_CH (locale field)"),
    ({"accept-language": "ja-JP"}, {}, "core", "unknown region 'ja-JP' (Accept-Language): core layer"),
    ({"x-user-region": "mars\r\nX-Evil: 1"}, {}, "core",
     "unknown region 'mars??X-Evil: 1' (header X-User-Region): core layer"),
    ({}, {"metadata": "eu"}, "core", "no user context: default layer"),
])
def test_pick_layer(models, headers, body, layer, reason):
    table = load_routes(write(models, GOOD))
    assert pick_layer(table, RequestContext(headers, body)) == (layer, reason)
