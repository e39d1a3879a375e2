"""Eval scores hand-checked completions exactly."""

import pytest

from ladder.evaluation import score_texts

ROWS = [{"answer": "85", "numbers": [], "target": None},
        {"answer": "12", "numbers": [], "target": None},
        {"answer": "7", "numbers": [], "target": None},
        {"answer": None, "numbers": [7, 3, 4], "target": 25},
        {"answer": None, "numbers": [7, 3, 4], "target": 25}]
TEXTS = ["<think>47 + 38 = 47 + 30 + 8 = 77 + 8 = 85</think><answer>85</answer>",  # right, well-formed
         "<think>5 + 8 = 13</think><answer>13</answer>",  # wrong
         "The answer is 7",  # right but malformed
         "<think>7 * 3 = 21, 21 + 4 = 25</think><answer>7 * 3 + 4</answer>",  # right countdown
         "<think>7 + 3 + 4</think><answer>7 + 3 + 4</answer>"]  # wrong countdown


def test_accuracy_and_format_match_hand_checked_answers():
    s = score_texts(TEXTS, ROWS)
    assert s["per_row"] == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert s["accuracy"] == 3 / 5
    assert s["format_rate"] == 4 / 5  # all but "The answer is 7"
    assert s["n"] == 5 and s["mean_length"] == sum(map(len, TEXTS)) / 5


def test_standard_error_per_kind_thinking_length_and_judges():
    rows = [{"answer": "85", "kind": "2-digit +"}, {"answer": "12", "kind": "2-digit +"},
            {"answer": "7", "kind": "1-digit -"}, {"answer": "9", "kind": "1-digit -"}]
    texts = ["<think>47 + 38 = 85. Hope that helps!</think><answer>85</answer>",
             "<think>5 + 8 = 13</think><answer>13</answer>",
             "<think>9 - 2 = 7. Ugh.</think><answer>7</answer>",
             "<think>4 + 5 = 9</think><answer>9</answer>"]
    s = score_texts(texts, rows, judges={"human_style": __import__("ladder.data.human").data.human.human_style})
    assert s["accuracy"] == 0.75
    assert s["accuracy_se"] == pytest.approx(0.25)  # sample variance 0.25, over n = 4
    assert s["per_kind"] == {"1-digit -": {"accuracy": 1.0, "se": 0.0, "n": 2, "abstain_rate": 0.0,
                                           "hallucination_rate": 0.0},
                             "2-digit +": {"accuracy": 0.5, "se": pytest.approx(0.5), "n": 2, "abstain_rate": 0.0,
                                           "hallucination_rate": 0.5}}
    thinks = ["47 + 38 = 85. Hope that helps!", "5 + 8 = 13", "9 - 2 = 7. Ugh.", "4 + 5 = 9"]
    assert s["think_length"] == sum(map(len, thinks)) / 4
    assert s["judge/human_style"] == 0.0  # +1, 0, -1, 0


def test_abstentions_are_counted_apart_from_wrong_answers():
    """abstain_rate over scored rows; hallucination and attempted accuracy over the rows that did not abstain."""
    rows = [{"answer": "85", "kind": "a"}, {"answer": "12", "kind": "a"}, {"answer": "7", "kind": "b"},
            {"answer": "9", "kind": "b"}, {"answer": None, "numbers": [1, 2], "target": None}]  # unscored
    texts = ["<think>47 + 38 = 85</think><answer>85</answer>",  # right
             "<think>5 + 8 = 13</think><answer>13</answer>",  # wrong: a hallucination
             "<think>not sure</think><answer>I don't know</answer>",  # abstains
             "<answer>I don't know, 9</answer>",  # a bet behind the abstention: attempted (and wrong)
             "<answer>I don't know</answer>"]  # no reward scores this row: counted nowhere
    s = score_texts(texts, rows)
    assert s["per_row"] == [1.0, 0.0, 0.0, 0.0, None] and s["accuracy"] == 0.25
    assert s["abstain_rate"] == 0.25 and s["abstain_rate_se"] == pytest.approx(0.25)  # sd 0.5 over n = 4
    assert s["hallucination_rate"] == pytest.approx(2 / 3) and s["attempted_accuracy"] == pytest.approx(1 / 3)
    assert s["attempted_accuracy_se"] == pytest.approx((1 / 3) ** 0.5 / 3 ** 0.5)  # sd of (1, 0, 0) over n = 3
    assert s["per_kind"]["a"]["abstain_rate"] == 0.0 and s["per_kind"]["a"]["hallucination_rate"] == 0.5
    assert s["per_kind"]["b"]["abstain_rate"] == 0.5 and s["per_kind"]["b"]["hallucination_rate"] == 1.0
    every = score_texts(["<answer>I don't know</answer>"] * 2, rows[:2])
    assert every["abstain_rate"] == 1.0 and every["hallucination_rate"] is None  # nothing attempted
    assert every["attempted_accuracy"] is None and every["accuracy"] == 0.0


def test_reliability_buckets_problems_by_sampled_pass_rate():
    from ladder.evaluation import reliability

    rates = [0.0, 0.125, 0.5, 0.625, 1.0, 1.0, None]
    greedy = [0.0, 1.0, 0.0, 1.0, 1.0, None, 1.0]  # the last two: unscored, left out
    assert reliability(rates, greedy) == [
        {"lo": 0.0, "hi": 0.2, "n": 2, "pass_rate": 0.0625, "accuracy": 0.5},
        {"lo": 0.4, "hi": 0.6, "n": 1, "pass_rate": 0.5, "accuracy": 0.0},
        {"lo": 0.6, "hi": 0.8, "n": 1, "pass_rate": 0.625, "accuracy": 1.0},
        {"lo": 0.8, "hi": 1.0, "n": 1, "pass_rate": 1.0, "accuracy": 1.0}]  # pass-rate 1 in the top bucket


def test_pass_at_k_counts_a_problem_solved_by_any_sample(monkeypatch):
    """evaluate_sampled: pass@1 is the mean over all samples, pass@k the share of problems with a hit."""
    import ladder.generation
    from ladder.evaluation import evaluate_sampled

    answers = iter(["<answer>1</answer>", "<answer>0</answer>",   # sample 1 of problems a, b
                    "<answer>0</answer>", "<answer>0</answer>",   # sample 2
                    "<answer>0</answer>", "<answer>2</answer>"])  # sample 3
    monkeypatch.setattr(ladder.generation, "generate", lambda m, t, prompts, **kw: [next(answers) for _ in prompts])
    out = evaluate_sampled(None, None, [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}],
                           samples=3, temperature=1.0, per_problem=True)
    assert out["accuracy_sampled"] == pytest.approx(2 / 6) and out["pass@3"] == 1.0
    assert out["pass_rates"] == [pytest.approx(1 / 3), pytest.approx(1 / 3)]


def test_code_rows_are_run_against_their_tests():
    """MBPP-style rows (a `tests` column) are scored by running the code in the sandbox."""
    rows = [{"tests": ["assert add(2, 3) == 5"]}, {"tests": ["assert add(2, 3) == 5"]}, {"answer": "4"}]
    texts = ["```python\ndef add(a, b):\n    return a + b\n```",
             "```python\ndef add(a, b):\n    return a - b\n```",
             "<think>2 + 2 = 4</think><answer>4</answer>"]
    assert score_texts(texts, rows)["per_row"] == [1.0, 0.0, 1.0]


def test_eval_matches_hand_checked_scores_end_to_end(tiny_run, tiny_sft):
    """Through the real CLI path: every answer lands in eval_completions.jsonl, each score agrees with a
    check by hand (the number in <answer> is the gold one), and the manifest's accuracy is their mean."""
    import json
    import re

    from ladder.eval import main
    from ladder.evaluation import COMPLETIONS
    from ladder.manifest import read_manifest

    assert main(["--checkpoints", str(tiny_sft), "--data", str(tiny_run / "data"), "--limit", "16",
                 "--run", "null", "--backend", "hf"]) == 0
    m = read_manifest(tiny_sft)["metrics"]
    assert m["eval/n"] == 16 and m["eval/backend"] == "hf" and m["eval/prompting"] == "chat template"
    done = [json.loads(line) for line in (tiny_sft / COMPLETIONS).read_text().splitlines()]
    assert len(done) == 16 and "completions" not in str(list(m))  # all answers in the file, three in the manifest
    by_hand = []
    for d in done:
        answer = re.search(r"<answer>\s*(-?\d+)\s*</answer>", d["completion"])
        by_hand.append(float(answer is not None and answer.group(1) == d["answer"].strip()))
        assert d["score"] == by_hand[-1], d
    assert m["eval/accuracy"] == pytest.approx(sum(by_hand) / 16)
    assert m["eval/samples"] == [{k: d[k] for k in ("prompt", "completion", "score")} for d in done[:3]]


@pytest.mark.slow
def test_vllm_backend_gives_the_same_answers_as_hf(tiny_run, tiny_sft):
    pytest.importorskip("vllm")
    import json
    import os
    import subprocess
    import sys

    from ladder.evaluation import evaluate_checkpoint, load_rows

    rows = load_rows(str(tiny_run / "data"), limit=16)
    hf = evaluate_checkpoint(tiny_sft, rows, max_new_tokens=32, backend="hf")
    code = ("import json, sys; from ladder.evaluation import evaluate_checkpoint, load_rows; "
            f"rows = load_rows({str(tiny_run / 'data')!r}, limit=16); "
            f"s = evaluate_checkpoint({str(tiny_sft)!r}, rows, max_new_tokens=32, backend='vllm'); "
            "print('RESULT ' + json.dumps({'accuracy': s['accuracy'], 'samples': s['samples']}))")
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert out.returncode == 0 and line, out.stderr[-3000:]
    vllm = json.loads(line[-1][7:])
    assert vllm["accuracy"] == hf["accuracy"]
    assert [s["completion"] for s in vllm["samples"]] == [s["completion"] for s in hf["samples"]]


@pytest.fixture
def fake_eval(tmp_path, monkeypatch):
    """`ladder eval` on one checkpoint dir with a manifest, models and data stubbed out: (checkpoint, the rows
    load_rows returns, the stats evaluate_checkpoint returns)."""
    import ladder.eval
    from ladder.manifest import write_manifest

    ckpt = tmp_path / "sft"
    write_manifest(ckpt, stage="sft", config={}, metrics={"train_loss": 1.5, "after/accuracy": 0.3})
    rows = [{"prompt": "What is 1 + 1?", "answer": "2"}]
    stats = {"accuracy": 0.25, "accuracy_se": 0.1, "format_rate": 1.0, "prompting": "chat template", "completions": []}
    monkeypatch.setattr(ladder.eval, "load_rows", lambda *a, **kw: rows)
    monkeypatch.setattr(ladder.eval, "resolve_backend", lambda backend: "hf")
    monkeypatch.setattr(ladder.eval, "evaluate_checkpoint", lambda *a, **kw: dict(stats))
    return ckpt, rows, stats


def test_a_new_eval_replaces_every_metric_an_earlier_eval_wrote(fake_eval):
    """A 200-problem eval with pass@k, a judge and reliability, then a plain one: only the new eval's numbers
    may be left under eval/ (the report read the old pass@k beside the new accuracy); training metrics stay."""
    from ladder.eval import main
    from ladder.manifest import read_manifest, update_metrics

    ckpt, _, stats = fake_eval
    update_metrics(ckpt, {"eval/accuracy": 0.9, "eval/n": 200, "eval/pass@1": 0.5, "eval/pass@8": 0.7,
                          "eval/judge/human_style": 0.2, "eval/reliability": [{"lo": 0.0, "n": 3}],
                          "eval/hallucination_rate": 0.1})
    assert main(["--checkpoints", str(ckpt), "--data", "held_out.jsonl", "--run", "null"]) == 0
    m = read_manifest(ckpt)["metrics"]
    assert {k for k in m if k.startswith("eval/")} == {f"eval/{k}" for k in stats if k != "completions"}
    assert m["eval/accuracy"] == 0.25 and m["train_loss"] == 1.5 and m["after/accuracy"] == 0.3


def test_data_without_a_gold_column_is_said_to_leave_accuracy_unmeasured(fake_eval, capsys):
    from ladder.eval import main
    from ladder.evaluation import has_gold

    ckpt, rows, stats = fake_eval
    args = ["--checkpoints", str(ckpt), "--data", "prompts_only.jsonl", "--run", "null"]
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().out  # rows with an answer: nothing to say
    rows[0].pop("answer")
    stats["accuracy"] = stats["accuracy_se"] = None
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "prompts_only.jsonl[test] has no gold column" in out and "accuracy is not measured" in out
    assert not has_gold([{"numbers": [1, 2], "target": None}, {"answer": ""}])  # countdown needs both columns
    assert has_gold([{"numbers": [1, 2], "target": 3}]) and has_gold([{"tests": ["assert f() == 1"]}])


def test_a_missing_folder_is_named_as_missing(tmp_path):
    """`--run /nonexist` said "no finished checkpoints to evaluate", as if the run were merely empty."""
    from ladder.errors import LadderError
    from ladder.eval import main

    with pytest.raises(LadderError, match=r"run '.*nope': no such folder"):
        main(["--run", str(tmp_path / "nope")])
    with pytest.raises(LadderError, match=r"checkpoint '.*nope': no such folder"):
        main(["--checkpoints", str(tmp_path / "nope"), "--run", "null"])


def test_help_says_where_eval_writes():
    from ladder.config import config_help
    from ladder.eval import EvalConfig

    text = config_help(EvalConfig)
    assert "ladder.json" in text and "eval_completions.jsonl" in text and "report" in text
