"""Loading through ``datasets``: a hub-like local repo offline (the real ``load_dataset``), files of each
kind, ``save_to_disk`` folders, mapped JSONL, row errors, and digests for stage keys."""

from __future__ import annotations

import json

import pytest

from cai.core.errors import CaiError
from cai.core.jsonl import read_prompts, read_records
from cai.core.records import PreferenceRecord
from cai.run.engine import file_digest
from tests.helpers.sources import datasets_cache, hh_rows, hub_like_folder, write_parquet  # noqa: F401


@pytest.fixture
def repo(tmp_path, datasets_cache):  # noqa: F811
    return hub_like_folder(tmp_path / "hh-rlhf")


def test_hub_like_folder_offline_config_and_split(repo):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # no network: config and split resolve from the README like on the hub
    test = read_records(f"{repo}:harmless-base:test", PreferenceRecord)
    assert [r.prompt[-1].content for r in test] == [f"test question {i}?" for i in range(3)]
    assert all(r.chosen[-1].content.startswith("I won't") and r.source == "human" for r in test)
    assert len(read_records(f"{repo}:harmless-base", PreferenceRecord)) == 4  # no split: train
    assert len(read_records(f"{repo}:helpful-base", PreferenceRecord)) == 2  # one part: a config
    assert len(read_records(f"{repo}:helpful-base:train", PreferenceRecord)) == 2
    prompts = read_prompts(f"{repo}:harmless-base:test")  # the same pairs as prompts: their human turns
    assert [p.prompt[-1].content for p in prompts] == [f"test question {i}?" for i in range(3)]


def test_a_changed_local_file_is_read_again_not_served_from_the_cache(repo):
    src = f"{repo}:harmless-base:test"
    before = file_digest(src)
    assert len(read_records(src, PreferenceRecord)) == 3
    write_parquet(repo / "data/harmless-base/test-00000-of-00001.parquet", hh_rows(5, "test"))
    assert len(read_records(src, PreferenceRecord)) == 5
    assert file_digest(src) != before and file_digest(src) == file_digest(src)
    assert file_digest(src) != file_digest(f"{repo}:harmless-base:train")
    assert file_digest(f"{src}#chosen=rejected,rejected=chosen") != file_digest(src)


def test_files_of_each_kind(tmp_path, datasets_cache):  # noqa: F811
    rows = [{"question": f"How do I bake bread {i}?", "category": "food"} for i in range(3)]
    write_parquet(tmp_path / "q.parquet", rows)
    (tmp_path / "q.csv").write_text("question,category\n" + "".join(f"{r['question']},food\n" for r in rows))
    (tmp_path / "q.tsv").write_text("question\tcategory\n"
                                    + "".join(f"{r['question']}\tfood\n" for r in rows))
    (tmp_path / "q.json").write_text(json.dumps(rows))
    for name in ("q.parquet", "q.csv", "q.tsv", "q.json"):
        got = read_prompts(tmp_path / name)  # the Do-Not-Answer shape: 'question' is the prompt
        assert [p.prompt for p in got] == [r["question"] for r in rows], name
        assert got[0].metadata == {"category": "food"}
    mapped = read_prompts(f"{tmp_path / 'q.csv'}#prompt=category")
    assert [p.prompt for p in mapped] == ["food"] * 3
    assert mapped[0].metadata == {"question": rows[0]["question"]}


def test_save_to_disk_folders(tmp_path, datasets_cache):  # noqa: F811
    import datasets

    pairs = [{"prompt": "q", "chosen": "a", "rejected": "b", "score": 1.0},
             {"prompt": "r", "chosen": "c", "rejected": "d", "score": 2.0}]
    datasets.Dataset.from_list(pairs).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(pairs),
                          "test": datasets.Dataset.from_list(pairs[:1])}).save_to_disk(str(tmp_path / "dd"))
    one = read_records(tmp_path / "one", PreferenceRecord)
    assert [r.chosen[-1].content for r in one] == ["a", "c"] and one[0].metadata == {"score": 1.0}
    assert len(read_records(f"{tmp_path / 'dd'}:test", PreferenceRecord)) == 1
    assert len(read_records(tmp_path / "dd", PreferenceRecord)) == 2  # no split: train
    with pytest.raises(CaiError, match=r"no split 'dev' \(splits: train, test\)"):
        read_records(f"{tmp_path / 'dd'}:dev", PreferenceRecord)


def test_pku_and_ultrafeedback_files(tmp_path, datasets_cache):  # noqa: F811
    pku = [{"prompt": "q", "response_0": "unsafe", "response_1": "safe", "is_response_0_safe": False,
            "safer_response_id": 1, "better_response_id": 0}]
    write_parquet(tmp_path / "pku.parquet", pku)
    (rec,) = read_records(tmp_path / "pku.parquet", PreferenceRecord)
    assert (rec.chosen[-1].content, rec.metadata["chosen_by"]) == ("safe", "safer_response_id")
    (rec,) = read_records(f"{tmp_path / 'pku.parquet'}#chosen_id=better_response_id", PreferenceRecord)
    assert rec.chosen[-1].content == "unsafe"
    u = {"role": "user", "content": "q"}
    uf = [{"prompt": "q", "prompt_id": "p", "chosen": [u, {"role": "assistant", "content": "A"}],
           "rejected": [u, {"role": "assistant", "content": "B"}], "score_chosen": 8.0,
           "score_rejected": 2.0}]
    write_parquet(tmp_path / "uf.parquet", uf)
    (rec,) = read_records(tmp_path / "uf.parquet", PreferenceRecord)
    assert [m.role for m in rec.chosen] == ["assistant"] and rec.metadata["score_chosen"] == 8.0


def test_jsonl_with_a_mapping_keeps_line_numbers_and_published_rows_are_adapted(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question": "a"}\n\n{"question": ""}\n')
    with pytest.raises(CaiError, match=r"q\.jsonl:3: prompt: Value error, prompt is empty"):
        read_prompts(f"{p}#prompt=question")
    hh = tmp_path / "hh.jsonl"
    hh.write_text("".join(json.dumps(r) + "\n" for r in hh_rows(2, "x")))
    assert [r.prompt[-1].content for r in read_records(hh, PreferenceRecord)] == ["x question 0?",
                                                                                  "x question 1?"]
    native = tmp_path / "n.jsonl"  # a native row is validated as before: an unknown key is still refused
    native.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "chozen": 1}\n')
    with pytest.raises(CaiError, match=r"n\.jsonl:1: chozen: Extra inputs are not permitted"):
        read_records(native, PreferenceRecord)


def test_row_errors_name_source_row_and_field(tmp_path, datasets_cache):  # noqa: F811
    (tmp_path / "p.csv").write_text("prompt,id\nfine,a\n,b\n")
    with pytest.raises(CaiError, match=r"p\.csv:row 2: prompt: Input should be a valid string"):
        read_prompts(tmp_path / "p.csv")
    (tmp_path / "d.csv").write_text("prompt,id\nx,a\ny,a\n")
    with pytest.raises(CaiError, match=r"d\.csv:row 2: id: duplicate prompt id 'a' \(first at row 1\)"):
        read_prompts(tmp_path / "d.csv")
    (tmp_path / "u.csv").write_text("instruction,output\nx,y\n")
    with pytest.raises(CaiError, match=r"u\.csv:row 1: no prompt: columns instruction, output .*fix: map the "
                                       r"columns: .*u\.csv#prompt=instruction"):
        read_prompts(tmp_path / "u.csv")


def test_label_responses_from_a_parquet_file(tmp_path, datasets_cache):  # noqa: F811
    from cai.stages.label.pairs import read_pairs_file

    write_parquet(tmp_path / "r.parquet", hh_rows(3, "r"))
    pairs, report = read_pairs_file(str(tmp_path / "r.parquet"))
    assert report.pairs == 3 and pairs[0].answer_a.startswith("I won't")
