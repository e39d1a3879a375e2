from ladder.rewards import countdown_accuracy

N, T = [[7, 3, 4]], [25]


def score(text):
    return countdown_accuracy([f"<answer>{text}</answer>"], numbers=N, target=T)[0]


def test_right_expression_scores_and_reuse_or_wrong_value_does_not():
    assert score("7 * 3 + 4") == 1.0
    assert score("(7 * 3) + 4 = 25") == 1.0
    assert score("7 * 3 + 4 + 0") == 0.0  # 0 is not a given number
    assert score("7 * 7 - 24") == 0.0  # 7 twice, 24 not given
    assert score("7 + 3 + 4") == 0.0


def test_unsafe_or_broken_expressions_score_zero_without_running():
    for bad in ("__import__('os').system('true')", "7 ** 3", "4 / (3 - 3)", "7 *", "lambda: 1"):
        assert score(bad) == 0.0
    assert countdown_accuracy(["no tags 7*3+4"], numbers=N, target=T) == [0.0]
    assert countdown_accuracy(["<answer>1</answer>"], numbers=[[]], target=[None]) == [None]
