"""cai.core.records: PreferenceRecord's labeler detail is `ai_label`; files with the old `label` key still
read."""

from __future__ import annotations

import json

import pytest

from cai.core.errors import CaiError
from cai.core.jsonl import read_records
from cai.core.records import PreferenceRecord

DETAIL = {"label_id": "x", "feedback_model": "m", "feedback_backend": "hf", "method": "logprobs",
          "principle_ids": ["p"], "margin": 0.5, "p_chosen_as_a": 0.8, "p_chosen_as_b": 0.7,
          "position_consistent": True}
PAIR = {"prompt": "q", "chosen": "a", "rejected": "b", "p_chosen": 0.75, "source": "ai"}


def test_old_label_key_reads_as_ai_label_and_new_files_write_ai_label(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({**PAIR, "label": DETAIL}) + "\n" + json.dumps({**PAIR, "chosen": "c"}) + "\n")
    old, plain = read_records(path, PreferenceRecord)
    assert old.ai_label is not None and old.ai_label.p_chosen_as_a == 0.8 and plain.ai_label is None
    written = json.loads(old.model_dump_json())
    assert written["ai_label"]["label_id"] == "x" and "label" not in written
    assert PreferenceRecord.model_validate(written) == old


def test_both_keys_are_refused_with_the_line(tmp_path):
    path = tmp_path / "both.jsonl"
    path.write_text(json.dumps({**PAIR, "label": DETAIL, "ai_label": DETAIL}) + "\n")
    with pytest.raises(CaiError, match=r"both\.jsonl:1:.*both label and ai_label"):
        read_records(path, PreferenceRecord)


def test_an_unpaired_label_is_not_taken_for_the_old_key():
    with pytest.raises(ValueError, match="label"):
        PreferenceRecord.model_validate({**PAIR, "label": True})
