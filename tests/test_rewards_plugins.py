import sys

import pytest

from ladder.errors import LadderError
from ladder.rewards import REWARDS, load_reward, load_rewards, validate_rewards

SAMPLE = {"prompts": ["1?", "3?"], "completions": ["<answer>1</answer>", "<answer>2</answer>"], "answer": ["1", "3"]}


def test_builtins_module_and_file_specs(tmp_path):
    f = tmp_path / "my_rewards.py"
    f.write_text("def brevity(completions, **kw):\n    return [1.0 / (1 + len(c)) for c in completions]\n")
    fns, weights = load_rewards(["math_accuracy", {"name": f"{f}:brevity", "weight": 0.2},
                                 {"name": "ladder.rewards.format:format_reward"}])
    assert [fn.__name__ for fn in fns] == ["math_accuracy", "brevity", "format_reward"]  # what TRL logs
    assert weights == [1.0, 0.2, 1.0]
    validate_rewards(fns, SAMPLE)
    assert fns[0](**SAMPLE) == [1.0, 0.0]
    assert fns[1](["ab"]) == [1 / 3]
    assert load_reward("math_accuracy") is REWARDS["math_accuracy"]


def test_module_spec_and_weight_mapping(tmp_path, monkeypatch):
    (tmp_path / "team_rewards.py").write_text(
        "import numpy as np\n\ndef half(completions, **kw):\n    return [np.float32(0.5)] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fns, weights = load_rewards({"team_rewards:half": 2, "format_reward": 0.5})
    assert [fn.__name__ for fn in fns] == ["half", "format_reward"] and weights == [2.0, 0.5]
    validate_rewards(fns, SAMPLE)  # numpy scalars are numbers
    sys.modules.pop("team_rewards", None)


@pytest.mark.parametrize("spec, msg", [
    ("nope", "unknown built-in (built-ins: abstention_reward, code_accuracy, countdown_accuracy, format_reward"),
    ("missing_file.py:f", "file missing_file.py not found"),
    ("ladder.rewards.text:nothing_here", "no function 'nothing_here'"),
    ("ladder.rewards.text:ANSWER", "'ANSWER' is not callable"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
])
def test_bad_specs(spec, msg):
    with pytest.raises(LadderError) as e:
        load_reward(spec)
    assert msg in str(e.value) and spec in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("source, spec_kind, msg", [
    ("def f(:\n", "module", "SyntaxError"),
    ("x = undefined_name\n", "module", "NameError"),
    ("import sys\nsys.exit(3)\n", "module", "SystemExit: 3"),
    ("import sys\nsys.exit(3)\n", "file", "SystemExit: 3"),
    ('raise ValueError("line one\\nline two")\n', "file", "ValueError: line one"),
    ("def __getattr__(name):\n    raise RuntimeError('boom')\n", "module", "RuntimeError: boom"),
])
def test_a_module_that_fails_to_load_is_one_line(source, spec_kind, msg, tmp_path, monkeypatch):
    """Only ImportError was caught for modules: a syntax error, any error at import, a sys.exit() (which ended
    the run silently with its code) or a module __getattr__ printed a traceback or nothing at all."""
    name = f"broken_{abs(hash(source)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{name}:f" if spec_kind == "module" else f"{tmp_path / name}.py:f"
    with pytest.raises(LadderError) as e:
        load_reward(spec)
    assert msg in str(e.value) and "\n" not in str(e.value)
    sys.modules.pop(name, None)


@pytest.mark.parametrize("spec", [":f", ".relative:f", "module:"])
def test_specs_without_a_module_or_a_function_are_refused(spec):
    with pytest.raises(LadderError, match="expected 'module:function' or 'path/file.py:function'"):
        load_reward(spec)


def test_bad_entries_and_weights():
    with pytest.raises(LadderError, match="weight must be a number"):
        load_rewards([{"name": "format_reward", "weight": "heavy"}])
    with pytest.raises(LadderError, match="expected"):
        load_rewards([{"nam": "format_reward"}])
    with pytest.raises(LadderError, match="no reward functions"):
        load_rewards([])


def _check(src, tmp_path):
    f = tmp_path / "r.py"
    f.write_text(src)
    fns, _ = load_rewards([f"{f}:r"])
    with pytest.raises(LadderError) as e:
        validate_rewards(fns, SAMPLE)
    message = str(e.value)
    assert "\n" not in message and f"'r' ({f}:r)" in message  # one line, naming the function and its file
    return message


def test_each_misbehaviour_is_a_one_line_error_naming_the_function(tmp_path):
    assert "wrong signature r(texts)" in _check("def r(texts):\n    return [1.0]*len(texts)\n", tmp_path)
    assert "wrong signature r(completions, answer)" in _check(  # no **kwargs: TRL's extra keywords would fail
        "def r(completions, answer):\n    return [1.0]*len(completions)\n", tmp_path)
    assert "returned 1 values for 2" in _check("def r(completions, **kw):\n    return [1.0]\n", tmp_path)
    assert "non-number 'yes'" in _check("def r(completions, **kw):\n    return ['yes', 1.0]\n", tmp_path)
    assert "non-number True" in _check("def r(completions, **kw):\n    return [True, 1.0]\n", tmp_path)
    assert "nan (not finite)" in _check("def r(completions, **kw):\n    return [float('nan'), 1.0]\n", tmp_path)
    assert "inf (not finite)" in _check("def r(completions, **kw):\n    return [1.0, float('inf')]\n", tmp_path)
    assert "raised ZeroDivisionError: division by zero" in _check("def r(completions, **kw):\n    return [1/0]\n",
                                                                  tmp_path)
    assert "raised ValueError: first line" in _check(
        "def r(completions, **kw):\n    raise ValueError('first line\\nsecond line')\n", tmp_path)
    assert "expected a list" in _check("def r(completions, **kw):\n    return 1.0\n", tmp_path)
    long = _check("def r(completions, **kw):\n    return {'x' * 500: 1}\n", tmp_path)
    assert len(long) < 250 and "..." in long  # the returned value is shown truncated


def test_none_entries_are_allowed(tmp_path):
    f = tmp_path / "ok.py"
    f.write_text("def r(completions, prompts=None, **kw):\n    assert prompts == ['1?', '3?']\n    return [None, 0]\n")
    validate_rewards(load_rewards([f"{f}:r"])[0], SAMPLE)


def test_gold_columns_a_reward_needs_are_checked_first(tmp_path):
    """Without its gold column a reward is None for every row, which TRL trains on as 0: refused, by name."""
    from ladder.rewards.plugins import required_columns

    f = tmp_path / "mine.py"
    f.write_text("def by_level(completions, level, prompts, *, answer, bonus=1.0, **kwargs):\n"
                 "    return [1.0] * len(completions)\n")
    fns, _ = load_rewards(["math_accuracy", "code_accuracy", "countdown_accuracy", "format_reward", f"{f}:by_level"])
    assert [required_columns(fn) for fn in fns] == [("answer",), ("tests",), ("numbers", "target"), (),
                                                    ("level", "answer")]
    with pytest.raises(LadderError) as e:
        validate_rewards(fns[1:2], SAMPLE, where="data/rl.jsonl")
    assert str(e.value).startswith("data/rl.jsonl: reward 'code_accuracy' needs column 'tests', which the data "
                                   "does not have (columns: prompts, answer)")
    with pytest.raises(LadderError, match=r"reward 'by_level' \(.*mine.py:by_level\) needs column 'level'"):
        validate_rewards(fns[4:], SAMPLE)
    validate_rewards(fns[4:], {**SAMPLE, "level": [1, 2]})
    with pytest.raises(LadderError, match="rewards: expected a list"):
        load_rewards(5)
