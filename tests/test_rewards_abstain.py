"""abstention_reward: right > "I don't know" > wrong, and no completion collects two of them."""

import pytest

from ladder.errors import LadderError
from ladder.rewards import abstained, abstention_reward, load_rewards, math_accuracy, validate_rewards

GOLD = "42"


@pytest.mark.parametrize("completion, expected", [
    ("<think>6 * 7 = 42</think><answer>42</answer>", 1.0),  # right
    ("<think>6 * 7 = 43</think><answer>43</answer>", 0.0),  # wrong
    ("<think>hm</think><answer>I don't know</answer>", 0.3),  # abstains
    ("<answer> I DON'T KNOW. </answer>", 0.3),  # case, spaces, final punctuation
    ("<answer>i dont know</answer>", 0.3),  # no apostrophe
    ("<answer>I don\u2019t know</answer>", 0.3),  # a typographic one
    ("<answer>I do not know</answer>", 0.3),
    ("<answer>not sure</answer>", 0.3),
    ("\\boxed{\\text{I don't know}}", 0.3),  # a boxed final answer is a final answer too
    ("<answer>I don't know, 42</answer>", 0.0),  # a bet behind the abstention: judged as an answer
    ("<answer>42 or I don't know</answer>", 0.0),  # hedged (math_accuracy), and no abstention either
    ("<think>I don't know... 6 * 7 = 43</think><answer>43</answer>", 0.0),  # the thinking is not the answer
    ("<think>I don't know</think><answer>42</answer>", 1.0),  # right stays right, nothing added
    ("<answer>42</answer><answer>I don't know</answer>", 0.3),  # the last answer block is the answer
    ("<answer>I don't know</answer><answer>43</answer>", 0.0),
    ("<answer></answer>", 0.0),  # saying nothing is no abstention
    ("<answer>   </answer>", 0.0),
    ("I don't know", 0.0),  # outside the answer format: no abstention
    ("", 0.0),
    ("<answer>I don't know how to do 6 * 7</answer>", 0.0),  # not one of the phrases, as a whole
])
def test_right_beats_abstain_beats_wrong_and_never_both(completion, expected):
    assert abstention_reward([completion], answer=[GOLD]) == [expected]
    # right is math_accuracy's judgement, exactly
    assert (expected == 1.0) == (math_accuracy([completion], answer=[GOLD]) == [1.0])


def test_rows_without_gold_stay_none_and_message_lists_are_read():
    msgs = [[{"role": "assistant", "content": "<answer>I don't know</answer>"}], "<answer>I don't know</answer>"]
    assert abstention_reward(msgs, answer=["5", None]) == [0.3, None]
    assert abstention_reward(["<answer>I don't know</answer>"]) == [None]  # no gold column at all
    assert abstained(msgs[0]) and not abstained("<answer>5</answer>")


def test_weights_come_from_the_recipe_and_are_checked():
    fns, weights = load_rewards([{"name": "abstention_reward", "weight": 2.0,
                                  "args": {"right": 1.0, "abstain": 0.5, "wrong": -1.0}}])
    fn = fns[0]
    assert fn.__name__ == "abstention_reward" and weights == [2.0]  # TRL logs it under its own name
    done = ["<answer>42</answer>", "<answer>I don't know</answer>", "<answer>41</answer>"]
    assert fn(done, answer=[GOLD] * 3, trainer_state=None) == [1.0, 0.5, -1.0]
    validate_rewards(fns, {"completions": done, "answer": [GOLD] * 3})  # still needs (and finds) `answer`
    with pytest.raises(LadderError, match="needs column 'answer'"):
        validate_rewards(fns, {"completions": done, "prompt": ["q"] * 3})


@pytest.mark.parametrize("args, message", [
    ({"abstian": 0.3}, "reward 'abstention_reward': unknown arg 'abstian' (its settings: right, abstain, wrong)"),
    ({"answer": "42"}, "unknown arg 'answer'"),  # a column, not a setting
    ([0.3], "args must be a mapping"),
])
def test_unknown_settings_are_one_line_errors_naming_the_reward(args, message):
    with pytest.raises(LadderError) as e:
        load_rewards([{"name": "abstention_reward", "args": args}])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("args, message", [
    ({"abstain": 1.0}, "needs wrong <= abstain < right"),  # abstaining always would be best
    ({"abstain": -0.5}, "needs wrong <= abstain < right"),  # guessing always would be best
    ({"right": "high"}, "right must be a number"),
])
def test_weights_that_teach_the_wrong_policy_are_refused_before_training(args, message):
    fns, _ = load_rewards([{"name": "abstention_reward", "args": args}])
    with pytest.raises(LadderError) as e:
        validate_rewards(fns, {"completions": ["<answer>1</answer>"], "answer": ["1"]})
    assert message in str(e.value) and "abstention_reward" in str(e.value) and "\n" not in str(e.value)


def test_custom_reward_settings_bind_and_are_not_mistaken_for_columns(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def r(completions, *, bonus, **kw):\n    return [bonus] * len(completions)\n")
    fns, _ = load_rewards([{"name": f"{f}:r", "args": {"bonus": 0.25}}])
    validate_rewards(fns, {"completions": ["a", "b"], "prompt": ["q", "q"]})  # `bonus` is no column
    assert fns[0](["a"]) == [0.25] and fns[0].__name__ == "r"
    with pytest.raises(LadderError, match="unknown arg 'x' \\(its settings: bonus\\)"):
        load_rewards([{"name": f"{f}:r", "args": {"x": 1}}])
    with pytest.raises(LadderError, match="unknown arg 'right' \\(its settings: none\\)"):
        load_rewards([{"name": "math_accuracy", "args": {"right": 1}}])
