import pytest

from ladder.errors import LadderError
from ladder.rewards import REWARDS, load_reward, load_rewards, validate_rewards

SAMPLE = {"completions": ["<answer>1</answer>", "<answer>2</answer>"], "answer": ["1", "3"]}


def test_builtins_module_and_file_specs(tmp_path):
    f = tmp_path / "my_rewards.py"
    f.write_text("def brevity(completions, **kw):\n    return [1.0 / (1 + len(c)) for c in completions]\n")
    fns, weights = load_rewards(["math_accuracy", {"name": f"{f}:brevity", "weight": 0.2},
                                 {"name": "ladder.rewards.format:format_reward"}])
    assert [fn.__name__ for fn in fns] == ["math_accuracy", "brevity", "format_reward"]
    assert weights == [1.0, 0.2, 1.0]
    validate_rewards(fns, SAMPLE)
    assert fns[0](**SAMPLE) == [1.0, 0.0]
    assert load_reward("math_accuracy") is REWARDS["math_accuracy"]


@pytest.mark.parametrize("spec, msg", [
    ("nope", "unknown built-in"),
    ("missing_file.py:f", "not found"),
    ("ladder.rewards.text:nothing_here", "no function 'nothing_here'"),
    ("no_such_module_xyz:f", "cannot import module"),
])
def test_bad_specs(spec, msg):
    with pytest.raises(LadderError, match=msg):
        load_reward(spec)


def _check(src, tmp_path):
    f = tmp_path / "r.py"
    f.write_text(src)
    fns, _ = load_rewards([f"{f}:r"])
    with pytest.raises(LadderError) as e:
        validate_rewards(fns, SAMPLE)
    assert "\n" not in str(e.value) and "'r'" in str(e.value)
    return str(e.value)


def test_each_misbehaviour_is_a_one_line_error_naming_the_function(tmp_path):
    assert "wrong signature" in _check("def r(texts):\n    return [1.0]*len(texts)\n", tmp_path)
    assert "returned 1 values for 2" in _check("def r(completions, **kw):\n    return [1.0]\n", tmp_path)
    assert "non-number 'yes'" in _check("def r(completions, **kw):\n    return ['yes', 1.0]\n", tmp_path)
    assert "not finite" in _check("def r(completions, **kw):\n    return [float('nan'), 1.0]\n", tmp_path)
    assert "raised ZeroDivisionError" in _check("def r(completions, **kw):\n    return [1/0]\n", tmp_path)
    assert "expected a list" in _check("def r(completions, **kw):\n    return 1.0\n", tmp_path)
