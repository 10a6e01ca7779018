"""The routing table of ``cai serve`` and the pure choice of a layer from a request's user context.

A table (YAML, e.g. ``examples/serve/routes.yaml``)::

    core: core                       # the universal layer; unknown regions fall back to it
    default: core                    # when the request carries no user context (default: core)
    layers:                          # name -> model folder (or hub id), or a LoRA adapter on the core
      core: core/model
      eu: {adapter: regions/eu/adapter, model: regions/eu/model}
      us: {adapter: regions/us/adapter}
    rules:                           # tried in order; the first whose source the request has decides
      - header: X-User-Region        # its value names a layer (or goes through map:)
      - metadata: region             # the JSON body's metadata.region
      - locale: {de: eu, fr: eu, en-us: us, en: us}   # body "locale", else Accept-Language

Values compare case-insensitively; a locale is tried whole (``de-de``), then by language (``de``). A
value no rule maps (``X-User-Region: mars``) goes to the core layer, and the reason says so.

>>> table = RoutingTable.model_validate({"layers": {"core": "m0", "eu": "m1", "us": "m2"},
...     "rules": [{"header": "X-User-Region"}, {"metadata": "region"}, {"locale": {"de": "eu"}}]})
>>> pick_layer(table, RequestContext({"x-user-region": "EU"}))
('eu', 'header X-User-Region=EU')
>>> pick_layer(table, RequestContext({}, {"metadata": {"region": "us"}}))
('us', 'metadata.region=us')
>>> pick_layer(table, RequestContext({"accept-language": "de-DE,de;q=0.9,en;q=0.8"}))
('eu', 'locale de-DE (Accept-Language)')
>>> pick_layer(table, RequestContext({"x-user-region": "mars"}))
('core', "unknown region 'mars' (header X-User-Region): core layer")
>>> pick_layer(table, RequestContext({}))
('core', 'no user context: default layer')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from cai.core.errors import CaiError
from cai.core.yaml_lines import Lines, error_hint, error_parts, located_error, parse_yaml, read_source, where

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
ROUTING_FIELDS = ("locale",)  # body fields only the router reads (engines refuse unknown fields)


def _as_layer(value: Any) -> Any:
    return {"model": value} if isinstance(value, str) else value


class Layer(BaseModel):
    """One layer: a full ``model`` (folder or hub id; for a region, its merged copy) and/or a LoRA
    ``adapter`` trained on the core model (vLLM serves it unmerged)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None = None
    adapter: str | None = None


class Rule(BaseModel):
    """Where a request's region comes from: one of ``header``, ``metadata`` or ``locale`` (the locale's
    own value -> layer map); ``map`` turns a header or metadata value into a layer (default: the
    value names the layer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    header: str | None = None
    metadata: str | None = None
    locale: dict[str, str] | None = None
    map: dict[str, str] = Field(default_factory=dict)

    @property
    def source(self) -> str:
        """The rule's source as messages name it.

        >>> Rule(header="X-User-Region").source, Rule(metadata="region").source, Rule(locale={}).source
        ('header X-User-Region', 'metadata.region', 'locale')
        """
        if self.header is not None:
            return f"header {self.header}"
        return f"metadata.{self.metadata}" if self.metadata is not None else "locale"


DEFAULT_RULES = (Rule(header="X-User-Region"), Rule(metadata="region"))


class RoutingTable(BaseModel):
    """The validated table (see the module doc); ``layers`` paths as resolved by :func:`load_routes`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    core: str = "core"
    default: str | None = None
    layers: dict[str, Annotated[Layer, BeforeValidator(_as_layer)]] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=lambda: list(DEFAULT_RULES))

    @property
    def default_layer(self) -> str:
        return self.default or self.core


@dataclass(frozen=True)
class RequestContext:
    """What a request says about its user: its headers (lower-case names) and its JSON body."""

    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)


def safe(value: str, limit: int = 40) -> str:
    """A request-supplied value fit for a response header and a log line (printable ASCII, short).

    >>> safe("eu"), safe("d\\u00e9\\nx"), len(safe("x" * 100))
    ('eu', 'd??x', 40)
    """
    return "".join(c if " " <= c <= "~" else "?" for c in str(value))[:limit]


def first_locale(accept_language: str) -> str | None:
    """The preferred tag of an ``Accept-Language`` value (highest q, first on ties), or None.

    >>> first_locale("fr-CH, fr;q=0.9, en;q=0.8"), first_locale("en;q=0.5, de-DE"), first_locale("*")
    ('fr-CH', 'de-DE', None)
    """
    best, best_q = None, -1.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        tag, q = tag.strip(), 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        if tag and tag != "*" and q > best_q:
            best, best_q = tag, q
    return best


def _lookup(mapping: Mapping[str, str], *keys: str) -> str | None:
    lowered = {k.lower(): v for k, v in mapping.items()}
    for key in keys:
        if key.lower() in lowered:
            return lowered[key.lower()]
    return None


def _rule_value(rule: Rule, ctx: RequestContext) -> tuple[str | None, str]:
    """The rule's raw value in the request (None: absent) and where it came from."""
    if rule.header is not None:
        value = ctx.headers.get(rule.header.lower())
        return (value.strip() or None if isinstance(value, str) else None), rule.source
    if rule.metadata is not None:
        meta = ctx.body.get("metadata")
        value = meta.get(rule.metadata) if isinstance(meta, Mapping) else None
        return (str(value).strip() or None if value is not None else None), rule.source
    body_locale = ctx.body.get("locale")
    if isinstance(body_locale, str) and body_locale.strip():
        return body_locale.strip(), "locale field"
    header = first_locale(ctx.headers.get("accept-language", ""))
    return header, "Accept-Language"


def pick_layer(table: RoutingTable, ctx: RequestContext) -> tuple[str, str]:
    """The layer for a request and why (see the module doc for worked examples).

    The first rule whose source the request carries decides; a value it cannot map goes to the core
    layer; no source at all goes to the default layer.

    >>> t = RoutingTable.model_validate({"layers": {"core": "a", "eu": "b"},
    ...                                  "rules": [{"header": "X-Region", "map": {"de": "eu"}}]})
    >>> pick_layer(t, RequestContext({"x-region": "DE"})), pick_layer(t, RequestContext({"x-region": "eu"}))
    (('eu', 'header X-Region=DE'), ('core', "unknown region 'eu' (header X-Region): core layer"))
    >>> pick_layer(t, RequestContext({"x-region": "  "}))
    ('core', 'no user context: default layer')
    """
    for rule in table.rules:
        value, source = _rule_value(rule, ctx)
        if value is None:
            continue
        if rule.locale is not None:
            layer = _lookup(rule.locale, value, value.replace("_", "-").split("-")[0])
            said = f"locale {safe(value)} ({source})"
        else:
            layer = _lookup(rule.map, value) if rule.map else _lookup({k: k for k in table.layers}, value)
            said = f"{source}={safe(value)}"
        if layer is None:
            return table.core, f"unknown region {safe(value)!r} ({source}): core layer"
        return layer, said
    return table.default_layer, "no user context: default layer"


# --- reading and checking a table ---------------------------------------------------------------


def _model_in(folder: Path) -> Path | None:
    """``folder/model`` or ``folder`` itself, whichever holds a model (a ``config.json``)."""
    for candidate in (folder / "model", folder):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def layers_from_run(run_dir: Path) -> dict[str, Layer]:
    """The layers a core + regions run wrote (:mod:`cai.run.regions`): ``core[/model]``,
    ``regions/<name>/adapter`` and a merged model (a folder with ``config.json``) at
    ``regions/<name>/adapter/train`` (what ``cai run`` leaves), ``regions/<name>/model`` or
    ``regions/<name>``; paths relative to the run.

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> for d in ("core/model", "regions/eu/adapter", "regions/eu", "regions/us/adapter",
    ...           "regions/apac/adapter", "regions/apac/adapter/train"):
    ...     (run / d).mkdir(parents=True, exist_ok=True)
    ...     name = "adapter_config.json" if d.endswith("adapter") else "config.json"
    ...     _ = (run / d / name).write_text("{}")
    >>> for name, layer in layers_from_run(run).items():
    ...     print(name, layer.model, layer.adapter)
    core core/model None
    apac regions/apac/adapter/train regions/apac/adapter
    eu regions/eu regions/eu/adapter
    us None regions/us/adapter
    """
    layers: dict[str, Layer] = {}
    core = _model_in(run_dir / "core")
    if core is not None:
        layers["core"] = Layer(model=core.relative_to(run_dir).as_posix())
    for region in sorted(p for p in (run_dir / "regions").glob("*") if p.is_dir()):
        adapter = region / "adapter"
        model = _model_in(region) or _model_in(adapter / "train")
        has_adapter = (adapter / "adapter_config.json").is_file()
        if model is not None or has_adapter:
            rel = adapter.relative_to(run_dir).as_posix() if has_adapter else None
            layers[region.name] = Layer(model=model.relative_to(run_dir).as_posix() if model else None,
                                        adapter=rel)
    return layers


def resolve_ref(ref: str, base: Path) -> str | None:
    """A layer's model/adapter reference made absolute against ``base`` when it exists there; a hub id
    (``org/name``, ``org`` not a folder in ``base``) is kept; None for a local path that does not exist.

    >>> import tempfile
    >>> base = Path(tempfile.mkdtemp()); (base / "core").mkdir()
    >>> resolve_ref("core", base) == str(base / "core"), resolve_ref("Org/model", base)
    (True, 'Org/model')
    >>> resolve_ref("./missing", base) is None, resolve_ref("missing", base), resolve_ref("core/typo", base)
    (True, None, None)
    """
    path = Path(ref).expanduser()
    full = path if path.is_absolute() else base / path
    if full.exists():
        return str(full.resolve())
    if HUB_ID.match(ref) and not ref.startswith((".", "~")) and not (base / ref.split("/")[0]).exists():
        return ref
    return None


def _check(table: RoutingTable, source: str, lines: Lines, base: Path) -> RoutingTable:
    """Cross-field checks, each one ``file:line: field: message`` line; paths resolved against ``base``."""

    def fail(loc: tuple[Any, ...], msg: str, hint: str) -> CaiError:
        return located_error(loc, msg, where(source, lines, loc), 0, hint)

    if not table.layers:
        raise fail(("layers",), "no layers", "name at least the core layer: layers: {core: path/to/model}")
    names = ", ".join(table.layers)
    for key in ("core", "default"):
        name = getattr(table, key)
        if name is not None and name not in table.layers:
            raise fail((key,), f"{name!r} is not a layer", f"use one of: {names}")
    layers = {}
    for name, layer in table.layers.items():
        if layer.model is None and layer.adapter is None:
            raise fail(("layers", name), "needs model: or adapter:",
                       "give the layer's model folder or adapter")
        if name == table.core and layer.model is None:
            raise fail(("layers", name), "the core layer needs a model:", "adapters are trained on it")
        resolved = {}
        for key in ("model", "adapter"):
            ref = getattr(layer, key)
            if ref is not None:
                resolved[key] = resolve_ref(ref, base)
                if resolved[key] is None:
                    raise fail(("layers", name, key), f"{base / ref} does not exist",
                               "check the path (relative paths start at --run, else at the routes file)")
        layers[name] = Layer(**resolved)
    for i, rule in enumerate(table.rules):
        sources = [k for k in ("header", "metadata", "locale") if getattr(rule, k) is not None]
        if len(sources) != 1:
            raise fail(("rules", i), f"give exactly one of header, metadata, locale (got {len(sources)})",
                       "write one source per rule: - header: X-User-Region")
        if rule.locale is not None and rule.map:
            raise fail(("rules", i, "map"), "a locale rule maps in locale: itself",
                       "write locale: {de: eu, en-us: us}")
        for key, mapping in (("map", rule.map), ("locale", rule.locale or {})):
            for value, layer in mapping.items():
                if layer not in table.layers:
                    raise fail(("rules", i, key, value), f"{layer!r} is not a layer", f"use one of: {names}")
    return table.model_copy(update={"layers": layers})


def validate_routes(data: Any, source: str, lines: Lines, base: Path,
                    run_layers: Mapping[str, Layer] | None = None) -> RoutingTable:
    """The checked table of a parsed YAML document (``run_layers`` from ``--run``: the file's own
    layers add to and override them)."""
    data = {} if data is None and run_layers else data
    if not isinstance(data, dict):
        raise CaiError(f"{source}: expected a mapping with layers: and rules:, got {type(data).__name__}",
                       hint="see the cai serve section of the README")
    try:
        table = RoutingTable.model_validate(data)
    except ValidationError as exc:
        loc, msg, others = error_parts(exc)
        raise located_error(loc, msg, where(source, lines, loc), others, error_hint(exc)) from None
    if run_layers:
        table = table.model_copy(update={"layers": {**run_layers, **table.layers}})
    return _check(table, source, lines, base)


def load_routes(path: str | Path | None, run_dir: str | Path | None = None) -> RoutingTable:
    """The routing table of ``path`` (relative paths against ``run_dir`` when given, else the file's
    folder); without ``path``, the run's layers with the default rules."""
    run_layers = layers_from_run(Path(run_dir)) if run_dir is not None else None
    if path is None:
        if run_dir is None:
            raise CaiError("cai serve needs --routes ROUTES.yaml or --run RUN_DIR",
                           hint="give a routing table, or the run folder of a core + regions recipe")
        if not run_layers:
            raise CaiError(f"--run {run_dir}: no core/model or regions/<name>/ in it",
                           hint="give the run folder of a core + regions recipe, or --routes")
        return validate_routes({}, str(run_dir), {}, Path(run_dir), run_layers)
    data, lines = parse_yaml(read_source(Path(path), str(path)), str(path))
    base = Path(run_dir) if run_dir is not None else Path(path).resolve().parent
    return validate_routes(data, str(path), lines, base, run_layers)
