import json
import re

import pytest

from ladder.data import build
from ladder.errors import LadderError
from ladder.manifest import read_manifest

SMALL = ["--corpus_docs", "400", "--sft_train", "300", "--prefs_train", "200", "--rl_train", "200",
         "--test_size", "60", "--countdown_fraction", "0.1"]


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
    assert re.fullmatch(r"<think> .+</think><answer> .+</answer>", sft["messages"][1]["content"])
    pair = _rows(data, "prefs_train")[0]
    assert pair["chosen"] != pair["rejected"] and pair["prompt"][0]["role"] == "user"
    rl = _rows(data, "rl_test")
    assert {r["task"] for r in rl} == {"arithmetic", "countdown"}
    assert all((r["answer"] is None) == (r["task"] == "countdown") for r in rl)
    # held out: two-digit problems only (test_levels [2]); training has the one-digit facts too
    assert {r["kind"] for r in rl} == {"2-digit +", "2-digit -", "2-digit *", "countdown"}
    assert {r["kind"] for r in _rows(data, "rl_train")} >= {"1-digit +", "1-digit -", "1-digit *"}


def test_replies_mix_answering_at_once_and_working_in_steps(data):
    replies = [r["messages"][1]["content"] for r in _rows(data, "sft_train") if r["kind"].startswith("2-digit")]
    worked = [t for t in replies if ", so " in t]
    assert 0.1 < len(worked) / len(replies) < 0.4  # steps_fraction 0.25
    assert all(re.search(r"so (\d+)\. [^<]*</think><answer> \1</answer>", t) for t in worked)


def test_pairs_follow_the_hidden_human_and_never_tie(data):
    from ladder.data import human

    pairs = _rows(data, "prefs_train")
    arithmetic_pairs = [p for p in pairs if p["answer"] is not None]
    for p in arithmetic_pairs:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert human.judgement(chosen, p["answer"]) > human.judgement(rejected, p["answer"])
    # most pairs differ in tone alone: both answers right
    both_right = [p for p in arithmetic_pairs if all(f"<answer> {p['answer']}</answer>" in p[k][0]["content"]
                                                     for k in ("chosen", "rejected"))]
    assert len(both_right) / len(arithmetic_pairs) > 0.5
    # the annotator never saw two closings in one reply
    assert all(len(human._CLOSING.findall(p[k][0]["content"])) <= 1 for p in pairs for k in ("chosen", "rejected"))


def test_hidden_human_scores():
    from ladder.data import human

    assert human.style_score("<think>2 + 2 = 4. Hope that helps!</think><answer>4</answer>") == 1.0
    assert human.style_score("<think>2 + 2 = 4</think><answer>4</answer>") == 0.0
    assert human.style_score("<think>2 + 2 = 4. Ugh.</think><answer>4</answer>") == -1.0
    assert human.style_score("<think>2 + 2 = 4. Hope that helps! Glad to help!</think>") == -1.0  # fawning
    assert human.judgement("<think>2 + 2 = 4. Obviously.</think><answer>4</answer>", "4") == 1.0
    assert human.judgement("<think>2 + 2 = 5. Hope that helps!</think><answer>5</answer>", "4") == 1.0
    assert human.human_style([[{"role": "assistant", "content": "4. Glad to help!"}], "4. Obviously."]) == [1.0, -1.0]


def test_no_test_problem_appears_in_any_training_text(data):
    """Neither as a question, nor as an answer or worked solution, nor as a step of another solution
    (held-out problems are two-digit; steps are one-digit facts, and the few two-digit facts steps use,
    like 15 - 8, are never held out)."""
    questions = [r["prompt"][0]["content"] for r in _rows(data, "rl_test")]
    train_text = "\n".join(
        [r["text"] for r in _rows(data, "corpus_train")]
        + [json.dumps(r) for name in ("sft_train", "prefs_train", "rl_train") for r in _rows(data, name)])
    for q in questions:
        assert q not in train_text, q
        if q.startswith("What is"):
            eq = q[len("What is "):-1]
            # not as a problem answered at once, nor as a step inside another problem's working
            assert f"{eq} =" not in train_text, eq


def test_same_seed_same_bytes(tmp_path, data):
    assert build.main(["--output_dir", str(tmp_path / "again"), *SMALL]) == 0
    for name in build.SPLITS:
        assert (tmp_path / "again" / f"{name}.jsonl").read_bytes() == (data / f"{name}.jsonl").read_bytes()


def test_parquet_output_and_bad_options(tmp_path):
    assert build.main(["--output_dir", str(tmp_path / "pq"), "--format", "parquet", *SMALL]) == 0
    assert (tmp_path / "pq" / "sft_train.parquet").is_file()
    with pytest.raises(LadderError, match="format"):
        build.main(["--format", "csv"])
