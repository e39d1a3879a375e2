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
