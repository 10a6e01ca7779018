"""cai: Constitutional AI and RLAIF toolkit.

Stages are functions over typed JSONL records (:mod:`cai.core.records`, :mod:`cai.core.jsonl`);
constitutions are YAML data (:mod:`cai.constitution.schema`); models sit behind the
:class:`cai.backends.Backend` protocol.
"""

__version__ = "0.1.0"
