from ladder.rewards import countdown_accuracy

N, T = [[7, 3, 4]], [25]


def score(text):
    return countdown_accuracy([f"<answer>{text}</answer>"], numbers=N, target=T)[0]


def test_right_expression_scores_and_reuse_or_wrong_value_does_not():
    assert score("7 * 3 + 4") == 1.0
    assert score("(7 * 3) + 4 = 25") == 1.0
    assert score(" 4 + 3 * 7 ") == 1.0
    assert score("7 * 3 + 4 + 0") == 0.0  # 0 is not a given number
    assert score("7 * 7 - 24") == 0.0  # 7 twice, 24 not given
    assert score("7 + 3 + 4") == 0.0
    assert countdown_accuracy(["<answer>(8 - 2) / 3</answer>"], numbers=[[8, 2, 3]], target=[2]) == [1.0]  # exact


def test_unsafe_or_broken_expressions_score_zero_without_running():
    for bad in ("__import__('os').system('true')", "7 ** 3", "4 / (3 - 3)", "7 *", "lambda: 1", "7.0 * 3 + 4",
                "[7, 3, 4]", "(7).__class__", "9" * 300):
        assert score(bad) == 0.0
    assert countdown_accuracy(["no tags 7*3+4"], numbers=N, target=T) == [0.0]


def test_rows_without_numbers_or_target_are_none_and_messages_work():
    msgs = [[{"role": "assistant", "content": "<answer>7 * 3 + 4</answer>"}], "<answer>1</answer>",
            "<answer>1</answer>"]
    assert countdown_accuracy(msgs, numbers=[[7, 3, 4], None, [1]], target=[25, 1, None]) == [1.0, None, None]
    assert countdown_accuracy(["<answer>1</answer>"]) == [None]


def test_row_values_are_compared_exactly():
    """int() on the row's values truncated a target of 25.5 to 25 and a number 1.9 to 1, paying expressions
    that reach neither. Values are read exactly; integers written as text or as 25.0 still count; a value that
    is no number is a clear error naming it."""
    import pytest

    right = "<answer>7*3+4</answer>"
    assert countdown_accuracy([right], numbers=[[7, 3, 4]], target=[25.5]) == [0.0]
    assert countdown_accuracy(["<answer>1+1</answer>"], numbers=[[1.9, 1]], target=[2]) == [0.0]
    assert countdown_accuracy([right, right], numbers=[[7, 3, 4], ["7", "3", "4"]], target=["25.0", 25]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="target 'abc' is not a number"):
        countdown_accuracy([right], numbers=[[7, 3, 4]], target=["abc"])
