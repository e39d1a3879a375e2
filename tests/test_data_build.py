import json
import re

import pytest

from ladder.data import build
from ladder.errors import LadderError
from ladder.manifest import read_manifest

SMALL = ["--corpus_docs", "400", "--sft_train", "300", "--prefs_train", "200", "--rl_train", "200",
         "--test_size", "60"]


def _rows(folder, name):
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert build.main(["--output_dir", str(out), *SMALL]) == 0
    return out


def test_every_format_has_its_columns_and_counts(data):
    counts = read_manifest(data)["metrics"]["counts"]
    assert counts == {"corpus_train": 400, "corpus_test": 60, "sft_train": 300, "sft_test": 60,
                      "prefs_train": 200, "prefs_test": 60, "rl_train": 200, "rl_test": 60}
    sft = _rows(data, "sft_train")[0]
    assert [m["role"] for m in sft["messages"]] == ["user", "assistant"]
    assert re.fullmatch(r"<think>.+</think><answer>.+</answer>", sft["messages"][1]["content"])
    pair = _rows(data, "prefs_train")[0]
    assert pair["chosen"] != pair["rejected"] and pair["prompt"][0]["role"] == "user"
    rl = _rows(data, "rl_test")
    assert {r["task"] for r in rl} == {"arithmetic", "countdown"}
    assert all((r["answer"] is None) == (r["task"] == "countdown") for r in rl)


def test_no_test_problem_appears_in_any_training_text(data):
    """Neither as a question nor as the head of a worked solution in any format.

    (Single-digit facts like 7 * 4 do occur inside longer training solutions: that is how
    17 * 4 is worked, and not the held-out problem itself.)"""
    questions = [r["prompt"][0]["content"] for r in _rows(data, "rl_test")]
    train_text = "\n".join(
        [r["text"] for r in _rows(data, "corpus_train")]
        + [json.dumps(r) for name in ("sft_train", "prefs_train", "rl_train") for r in _rows(data, name)])
    for q in questions:
        assert q not in train_text, q
        if q.startswith("What is"):
            eq = q[len("What is "):-1]
            for head in (f"A: {eq} =", f"<think>{eq} =", f"has {eq} =", f"makes {eq} =", f". {eq} ="):
                assert head not in train_text, head


def test_same_seed_same_bytes(tmp_path, data):
    assert build.main(["--output_dir", str(tmp_path / "again"), *SMALL]) == 0
    for name in build.SPLITS:
        assert (tmp_path / "again" / f"{name}.jsonl").read_bytes() == (data / f"{name}.jsonl").read_bytes()


def test_parquet_output_and_bad_options(tmp_path):
    assert build.main(["--output_dir", str(tmp_path / "pq"), "--format", "parquet", *SMALL]) == 0
    assert (tmp_path / "pq" / "sft_train.parquet").is_file()
    with pytest.raises(LadderError, match="format"):
        build.main(["--format", "csv"])
