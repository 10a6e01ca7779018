"""Record inputs beyond JSONL: files, ``datasets`` folders and hub ids, with column mapping and format
adapters.

* :mod:`cai.sources.spec`: the source string ``LOCATION[:CONFIG[:SPLIT]][#TARGET=COLUMN,...]``;
* :mod:`cai.sources.load`: rows through ``datasets.load_dataset`` / ``load_from_disk``;
* :mod:`cai.sources.columns`: the column mapping;
* :mod:`cai.sources.formats`: adapters for the shapes the field publishes (hh-rlhf, UltraFeedback,
  implicit-prompt pairs, PKU-SafeRLHF; AdvBench, HarmBench, Do-Not-Answer prompts).

:mod:`cai.core.jsonl`'s readers dispatch here for every source that is not a plain ``.jsonl`` file.
"""
