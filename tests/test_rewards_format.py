from ladder.rewards import format_reward, length_penalty


def test_format_reward_grades_the_shape():
    assert format_reward(["<think>a</think><answer>1</answer>", " <think>a</think>\n<answer>1</answer> ",
                          "<answer>1</answer>", "<think>a</think><answer>1</answer> extra", "1"]) == \
        [1.0, 1.0, 0.5, 0.5, 0.0]


def test_length_penalty_prefers_short():
    short, long = length_penalty(["x" * 10, "x" * 1000])
    assert 0 > short > long == -0.1
