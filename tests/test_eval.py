"""Eval scores hand-checked completions exactly."""

from ladder.eval import score_texts

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
