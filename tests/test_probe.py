"""`ladder probe`: what the model knows, read off k samples per question, as an SFT set of its own right
answers and "I don't know"."""

import json

import pytest

from ladder.errors import LadderError
from ladder.probe import ProbeConfig, idk_answer, probe

ROWS = [{"prompt": [{"role": "user", "content": "What is 2 + 2?"}], "answer": "4", "kind": "1-digit +"},
        {"prompt": "What is 47 * 38?", "answer": "1786", "kind": "2-digit *"},
        {"prompt": [{"role": "user", "content": "What is 9 - 5?"}], "answer": "4", "kind": "1-digit -"},
        {"prompt": [{"role": "user", "content": "Make 25"}], "answer": None, "numbers": [], "kind": "countdown"}]
# sample-major, as ladder.evaluation.sample_answers returns them: sample j of question i at [j * 4 + i]
SAMPLES = ["<answer> 4</answer>",  # q0, sample 1: right but not well-formed
           "<think> 47 * 38 = 1700</think><answer> 1700</answer>",  # q1: wrong
           "<think> 9 - 5 = 4</think><answer> 4</answer>",  # q2: right
           "<answer> 7</answer>",  # q3: no gold, unscored
           "<think> 2 + 2 = 4</think><answer> 4</answer>",  # q0, sample 2: right, well-formed
           "<think> 47 * 38 = 1786</think><answer> 1787</answer>",  # q1: wrong
           "<think> 9 - 5 = 3</think><answer> 3</answer>",  # q2: wrong
           "<answer> 7</answer>"]


@pytest.fixture
def scripted(monkeypatch):
    import ladder.generation

    calls = []

    def generate(model, tokenizer, prompts, **kw):
        calls.append((prompts, kw))
        return list(SAMPLES)

    monkeypatch.setattr(ladder.generation, "generate", generate)
    return calls


def test_known_keep_their_right_answer_unknown_learn_i_dont_know_mixed_are_left_out(scripted):
    cfg = ProbeConfig(samples=2, known_threshold=1.0, unknown_threshold=0.0, temperature=0.7, seed=3)
    chats, answers, stats = probe(None, None, ROWS, cfg)
    prompts, kw = scripted[0]
    assert prompts == [r["prompt"] for r in ROWS] * 2 and kw["temperature"] == 0.7 and kw["seed"] == 3
    assert [c["probe"] for c in chats] == ["known", "unknown"]  # q0 (2/2) and q1 (0/2); q2 (1/2) is mixed
    known, unknown = chats
    # the well-formed right answer first
    assert known["messages"] == [*ROWS[0]["prompt"], {"role": "assistant", "content": SAMPLES[4]}]
    assert unknown["messages"] == [{"role": "user", "content": "What is 47 * 38?"},  # a text prompt becomes a turn
                                   {"role": "assistant",
                                    "content": "<think></think><answer> I don't know</answer>"}]
    assert unknown["answer"] == "1786" and unknown["kind"] == "2-digit *" and unknown["pass_rate"] == 0.0
    assert {k: stats[k] for k in ("questions", "known", "unknown", "mixed", "unscored")} == \
        {"questions": 4, "known": 1, "unknown": 1, "mixed": 1, "unscored": 1}
    assert stats["per_kind"]["2-digit *"] == {"known": 0, "unknown": 1, "mixed": 0, "unscored": 0}
    assert stats["per_kind"]["countdown"]["unscored"] == 1
    assert stats["histogram"] == {"0/2": 1, "1/2": 1, "2/2": 1}
    assert answers[2]["samples"] == [SAMPLES[2], SAMPLES[6]] and answers[2]["scores"] == [1.0, 0.0]


def test_thresholds_decide_what_counts_as_known(scripted):
    chats, _, stats = probe(None, None, ROWS, ProbeConfig(samples=2, known_threshold=0.5))
    assert [c["probe"] for c in chats] == ["known", "unknown", "known"] and stats["mixed"] == 0
    assert chats[2]["messages"][-1]["content"] == SAMPLES[2]  # its only right answer


def test_the_reply_follows_the_models_answer_format():
    cfg = ProbeConfig()
    assert idk_answer(cfg, ["<think>2+2=4</think><answer>4</answer>"] * 3) == \
        "<think></think><answer>I don't know</answer>"  # no space after the tags
    assert idk_answer(ProbeConfig(idk_think="Not learnt."), ["<think> 4</think><answer> 4</answer>"]) == \
        "<think> Not learnt.</think><answer> I don't know</answer>"
    assert idk_answer(cfg, ["<answer> 4</answer>"]) == "<answer> I don't know</answer>"  # answers without thinking
    assert idk_answer(cfg, ["so the answer is \\boxed{4}", "4"]) == "\\boxed{\\text{I don't know}}"


@pytest.mark.parametrize("args, message", [
    ({"samples": 1}, "samples must be at least 2"),
    ({"known_threshold": 0.5, "unknown_threshold": 0.5}, "need 0 <= unknown_threshold < known_threshold <= 1"),
    ({"known_threshold": 1.5}, "need 0 <= unknown_threshold < known_threshold <= 1"),
    ({"temperature": 0.0}, "temperature must be above 0"),
    ({"idk_reply": "Maybe 5"}, "idk_reply 'Maybe 5' does not count as abstaining"),
])
def test_bad_settings_are_one_line_errors(args, message):
    with pytest.raises(LadderError) as e:
        ProbeConfig(**args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_rows_without_gold_fail_before_any_model_loads(tmp_path):
    from ladder.probe import main

    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"prompt": "What is 2 + 2?"}) + "\n")
    with pytest.raises(LadderError, match=r"q.jsonl\[train\]: no row has a gold column"):
        main(["--data", str(f), "--model", str(tmp_path / "no_such_model"), "--output_dir", str(tmp_path / "p")])


def test_probe_writes_a_data_dir_that_sft_and_eval_read(tiny_run, tiny_sft, tmp_path):
    """On the tiny SFT model, 8 questions x 2 samples: every question is counted once, the chats are
    valid SFT rows, and the held-out files sit beside them."""
    from ladder.data.chat import to_messages
    from ladder.data.loaders import load_split
    from ladder.manifest import read_manifest
    from ladder.probe import main

    out = tmp_path / "probe"
    assert main(["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                 "--limit", "8", "--samples", "2", "--max_new_tokens", "48", "--known_threshold", "0.5"]) == 0
    stats = json.loads((out / "probe.json").read_text())
    assert stats["questions"] == 8 and sum(stats[k] for k in ("known", "unknown", "mixed", "unscored")) == 8
    assert sum(stats["histogram"].values()) == 8 - stats["unscored"]
    chats = [json.loads(line) for line in (out / "sft_train.jsonl").read_text().splitlines()]
    assert len(chats) == stats["known"] + stats["unknown"] > 0
    assert to_messages(load_split(str(out), "sft", "train"), "probe").num_rows == len(chats)
    for c in chats:
        reply = c["messages"][-1]["content"]
        assert (reply == stats["idk_answer"]) == (c["probe"] == "unknown"), c
    assert {"sft_test.jsonl", "rl_test.jsonl"} <= set(stats["held_out"])
    assert (out / "rl_test.jsonl").read_text() == (tiny_run / "data" / "rl_test.jsonl").read_text()
    m = read_manifest(out)
    assert m["stage"] == "probe" and m["parent"] == str(tiny_sft) and m["metrics"]["questions"] == 8


def test_probe_then_sft_teaches_the_model_to_abstain_where_it_is_wrong(tiny_run, tiny_sft, tmp_path):
    """Learning: the tiny SFT model never says "I don't know" and is wrong on most held-out problems. Probed
    on training questions (most consistently wrong), then fine-tuned briefly on the probe set, it abstains on
    most of the held-out problems it got wrong before, in its answer format. (8 epochs of ~90 chats: at 2
    epochs it has learnt `<think></think><answer>` but not yet the words, and writes noise after it.)"""
    from ladder import sft
    from ladder.evaluation import evaluate_checkpoint, load_rows
    from ladder.probe import main

    out = tmp_path / "probe"
    assert main(["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                 "--limit", "96", "--samples", "2", "--max_new_tokens", "48"]) == 0
    assert json.loads((out / "probe.json").read_text())["unknown"] > 0
    knows = tmp_path / "knows"
    assert sft.main(["--model", str(tiny_sft), "--data", str(out), "--output_dir", str(knows),
                     "--num_train_epochs", "8", "--learning_rate", "2e-3", "--eval_samples", "0",
                     "--report_to", "none", "--save_strategy", "no"]) == 0
    rows = load_rows(str(tiny_run / "data"), limit=32)
    before = evaluate_checkpoint(tiny_sft, rows, max_new_tokens=48)
    after = evaluate_checkpoint(knows, rows, max_new_tokens=48)
    assert before["abstain_rate"] == 0.0
    wrong = [i for i, c in enumerate(before["completions"]) if c["score"] == 0.0]
    assert len(wrong) >= 16
    from ladder.rewards import abstained

    now_abstains = [abstained(after["completions"][i]["completion"]) for i in wrong]
    assert sum(now_abstains) / len(wrong) > 0.5, after["samples"]
    assert after["format_rate"] > 0.9  # "I don't know" in the <think>/<answer> format, not a broken answer
