"""cai: Constitutional AI and RLAIF toolkit.

Stages are functions over typed JSONL records (:mod:`cai.records`, :mod:`cai.io`);
constitutions are YAML data (:mod:`cai.constitution`); models sit behind the
:class:`cai.backends.Backend` protocol.
"""

__version__ = "0.1.0"
