import json

import pytest

from ladder import rm
from ladder.errors import LadderError
from ladder.manifest import read_manifest


def test_reward_model_ranks_heldout_pairs_well_above_chance(tiny_rm):
    acc = read_manifest(tiny_rm)["metrics"]["pairwise_accuracy"]
    print(f"held-out pairwise accuracy: {acc:.3f}")
    assert acc >= 0.7


def test_score_reads_text_or_messages_and_prefers_correct_answers(tiny_rm):
    prompt = [{"role": "user", "content": "What is 7 + 5?"}]
    good, bad = "<think>7 + 5 = 12</think><answer>12</answer>", "The answer is 12"
    as_text = rm.score(tiny_rm, [prompt, prompt], [good, bad])
    as_msgs = rm.score(tiny_rm, [prompt, prompt], [[{"role": "assistant", "content": good}],
                                                   [{"role": "assistant", "content": bad}]])
    assert as_text == pytest.approx(as_msgs)
    assert as_text[0] > as_text[1]  # well-formed beats malformed


def test_missing_chosen_column_and_identical_pair_name_file_and_row(tiny_sft, tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": "q", "rejected": "b"}) + "\n")
    with pytest.raises(LadderError, match="missing column 'chosen'"):
        rm.main(["--model", str(tiny_sft), "--data", str(f), "--test_split", "null",
                 "--output_dir", str(tmp_path / "o")])
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n"
                 + json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}) + "\n")
    with pytest.raises(LadderError) as e:
        rm.main(["--model", str(tiny_sft), "--data", str(f), "--test_split", "null",
                 "--output_dir", str(tmp_path / "o")])
    assert "row 1: chosen and rejected are identical" in str(e.value) and str(f) in str(e.value)
