import pytest

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


def test_rewards_read_a_tool_rollout_as_the_model_wrote_it():
    """With tools a completion is [assistant call, tool result, assistant answer]. The answer is the last
    assistant message's; a rollout cut after the result, ending on the tool's message, has no answer (the
    tool's output is not the model's); the length counts every assistant turn, not the tool's output."""
    from ladder.rewards import completion_text, math_accuracy
    from ladder.rewards.format import length_penalty

    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": " 47 * 38"}}}]}
    result = {"role": "tool", "name": "calculator", "content": "1786"}
    answered = [call, result, {"role": "assistant", "content": "<think> 1786</think><answer> 1786</answer>"}]
    cut = [call, result]
    assert completion_text(answered).endswith("<answer> 1786</answer>") and completion_text(cut) == ""
    assert math_accuracy([answered, cut], answer=["1786", "1786"]) == [1.0, 0.0]
    padded = [{**call, "content": "x" * 400}, result, answered[-1]]
    assert length_penalty([padded])[0] == -0.1 < length_penalty([answered])[0]
    assert length_penalty([[call, {**result, "content": "9" * 4000}, answered[-1]]]) == length_penalty([answered])


def test_tool_cost_prices_each_call_the_model_made():
    from ladder.rewards import tool_cost

    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": " 2 + 3"}}}]}
    two = {**call, "tool_calls": call["tool_calls"] * 2}
    result = {"role": "tool", "name": "calculator", "content": "5", "tool_calls": [{"oops": 1}]}  # not the model's
    answer = {"role": "assistant", "content": "<think> 5</think><answer> 5</answer>"}
    assert tool_cost(["<answer> 5</answer>", [answer], [call, result, answer], [two, result, answer]],
                     cost=0.1) == [0.0, 0.0, -0.1, -0.2]


def test_messages_with_content_parts_are_read_as_their_text():
    """The multimodal chat format gives a message's content as a list of parts; every text reward raised
    TypeError on it."""
    from ladder.rewards import abstention_reward, countdown_accuracy, math_accuracy

    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<think>7*3=21</think>"},
                                               {"type": "text", "text": "<answer>7*3+4</answer>"}]}]
    assert format_reward([parts]) == [1.0]
    written = "<think>7*3=21</think><answer>7*3+4</answer>"
    assert length_penalty([parts], max_length=400) == [pytest.approx(-0.1 * len(written) / 400)]
    assert countdown_accuracy([parts], numbers=[[7, 3, 4]], target=[25]) == [1.0]
    answer = [{"role": "assistant", "content": [{"type": "text", "text": "<answer>85</answer>"}]}]
    assert math_accuracy([answer], answer=["85"]) == abstention_reward([answer], answer=["85"]) == [1.0]
