from ladder.rewards import format_reward, length_penalty


def test_format_reward_grades_the_shape():
    good = ["<think>a</think><answer>1</answer>", " <think>a\nb</think>\n<answer>1</answer> \n",
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>a</think><answer>1</answer>"}]]
    half = ["<answer>1</answer>", "<think>a</think><answer>1</answer> extra",
            "<think>a</think><answer>1</answer><answer>2</answer>",
            "<think>a<answer>0</answer></think><answer>1</answer>"]
    zero = ["1", "<think>a</think>", "<think>a</think><answer>1", ""]
    assert format_reward(good + half + zero, prompts=["p"] * 11) == [1.0] * 3 + [0.5] * 4 + [0.0] * 4


def test_length_penalty_prefers_short():
    short, long = length_penalty(["x" * 10, "x" * 1000])
    assert 0 > short > long == -0.1
    assert length_penalty(["x" * 50], max_length=100) == [-0.05]
