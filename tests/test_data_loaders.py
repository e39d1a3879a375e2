import json

import pytest

from ladder.data.loaders import load_split
from ladder.errors import LadderError


def test_builtin_dir_and_local_files(tiny_data, tmp_path):
    assert load_split(tiny_data, "sft", "test").num_rows > 0
    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"chosen": "a", "rejected": "b"}) + "\n")
    assert load_split(str(f), "prefs").num_rows == 1


def test_missing_column_names_file_and_column(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": "q", "rejected": "b"}) + "\n")
    with pytest.raises(LadderError) as e:
        load_split(str(f), "prefs")
    assert str(f) in str(e.value) and "'chosen'" in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_unreachable_hub_id(tmp_path):
    with pytest.raises(LadderError, match="not found"):
        load_split(str(tmp_path / "none.jsonl"), "corpus")
    with pytest.raises(LadderError, match="no corpus_train"):
        load_split(str(tmp_path), "corpus")
    with pytest.raises(LadderError, match="could not load hub dataset"):
        load_split("nobody/no-such-dataset-xyz", "rl")


def test_empty_malformed_and_unsupported_files_name_the_file_and_line(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(LadderError, match="empty.jsonl: empty file"):
        load_split(str(tmp_path / "empty.jsonl"), "sft")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"chosen": "a", "rejected": "b"}) + "\n\n" + '{"chosen": "a", "rejected": \n')
    with pytest.raises(LadderError) as e:
        load_split(str(bad), "prefs")
    assert f"{bad}: line 3: not valid JSON" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "rows.txt").write_text("a\n")
    with pytest.raises(LadderError, match="unsupported data file type '.txt'"):
        load_split(str(tmp_path / "rows.txt"), "sft")
    with pytest.raises(LadderError, match="no such file or directory"):
        load_split(str(tmp_path / "runs" / "data"), "sft")


def test_rl_prompts_and_corpus_text_are_checked_row_by_row(tmp_path):
    f = tmp_path / "rl.jsonl"
    f.write_text(json.dumps({"prompt": "What is 1 + 1?"}) + "\n" + json.dumps({"prompt": [{"role": "user"}]}) + "\n")
    with pytest.raises(LadderError, match="rl.jsonl: line 2: prompt must be text or a list of {role, content}"):
        load_split(str(f), "rl")
    f.write_text(json.dumps({"prompt": "   "}) + "\n")
    with pytest.raises(LadderError, match="rl.jsonl: line 1: empty prompt"):
        load_split(str(f), "rl")
    c = tmp_path / "corpus.jsonl"
    c.write_text(json.dumps({"text": 5}) + "\n")
    with pytest.raises(LadderError, match="corpus.jsonl: line 1: text must be a string, got int"):
        load_split(str(c), "corpus")
