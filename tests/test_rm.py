import json

import pytest

from ladder import rm
from ladder.errors import LadderError
from ladder.manifest import read_manifest
from ladder.models import score


def test_reward_model_ranks_heldout_pairs_well_above_chance(tiny_rm):
    acc = read_manifest(tiny_rm)["metrics"]["pairwise_accuracy"]
    print(f"held-out pairwise accuracy: {acc:.3f}")
    assert acc >= 0.7


def test_score_reads_text_or_messages_and_prefers_what_the_annotator_preferred(tiny_rm):
    """Scored as text or as messages alike; of two right answers, the warm closing the hidden human
    (ladder.data.human) prefers beats the cold one. (An answer in a format the pairs never showed, say
    without tags, scores wherever the random score head left it: nothing to assert on.)"""
    prompt = [{"role": "user", "content": "What is 7 + 5?"}]
    good, bad = "<think> 7 + 5 = 12. Glad to help!</think><answer> 12</answer>", \
        "<think> 7 + 5 = 12. Ugh.</think><answer> 12</answer>"
    as_text = score(tiny_rm, [prompt, prompt], [good, bad])
    as_msgs = score(tiny_rm, [prompt, prompt], [[{"role": "assistant", "content": good}],
                                                [{"role": "assistant", "content": bad}]])
    assert as_text == pytest.approx(as_msgs)
    assert as_text[0] > as_text[1] + 1.0


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
    assert "line 2: chosen and rejected are identical" in str(e.value) and str(f) in str(e.value)


def test_score_caches_the_model_and_checks_lengths(tiny_rm):
    from ladder.models import load_reward_model

    score(tiny_rm, ["q"], ["a"])
    assert load_reward_model(str(tiny_rm)) is load_reward_model(str(tiny_rm))
    with pytest.raises(LadderError, match="2 prompts but 1 completions"):
        score(tiny_rm, ["q", "r"], ["a"])


def test_plain_text_pairs_without_prompt_train_and_score(tiny_sft, tmp_path):
    """Non-conversational pairs (no shared prompt) go through the same stage; test_data holds the
    held-out pairs, since a single file has no test split."""
    rows = [json.loads(line) for line in (tiny_sft.parent / "data" / "prefs_train.jsonl").open()][:48]
    plain = [{"chosen": r["prompt"][0]["content"] + " " + r["chosen"][0]["content"],
              "rejected": r["prompt"][0]["content"] + " " + r["rejected"][0]["content"]} for r in rows]
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in plain[:40]))
    test.write_text("".join(json.dumps(r) + "\n" for r in plain[40:]))
    assert rm.main(["--model", str(tiny_sft), "--data", str(train), "--test_data", str(test), "--max_steps", "2",
                    "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "o"),
                    "--report_to", "none", "--save_strategy", "no"]) == 0
    m = read_manifest(tmp_path / "o")
    assert m["stage"] == "rm" and m["parent"] == str(tiny_sft) and 0 <= m["metrics"]["pairwise_accuracy"] <= 1
