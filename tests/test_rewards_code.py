import pytest

from ladder.rewards import REWARDS, code_accuracy, sandbox
from ladder.rewards.code import extract_program

pytestmark = pytest.mark.skipif(all(sandbox.probe(k) for k in ("bwrap", "setuid")),
                                reason="no sandbox jail works here (install bubblewrap)")

TESTS = "assert square(3) == 9\nassert square(-2) == 4"
RIGHT = "<think>multiply it by itself</think><answer>\n```python\ndef square(x):\n    return x * x\n```\n</answer>"
WRONG = "<think>double it</think><answer>\n```python\ndef square(x):\n    return 2 * x\n```\n</answer>"


def test_correct_and_wrong_programs_in_one_batch():
    completions = [RIGHT, WRONG, [{"role": "assistant", "content": RIGHT}], "no code at all", RIGHT]
    tests = [TESTS, TESTS, TESTS, TESTS, None]
    assert code_accuracy(completions, tests=tests, prompts=["p"] * 5) == [1.0, 0.0, 1.0, 0.0, None]
    assert code_accuracy([RIGHT]) == [None]
    assert REWARDS["code_accuracy"] is code_accuracy


def test_tests_as_a_list_of_asserts_and_a_program_that_hangs(monkeypatch):
    monkeypatch.setattr("ladder.rewards.code.TIMEOUT_S", 0.5)
    hang = "```python\ndef square(x):\n    while True:\n        pass\n```"
    assert code_accuracy([RIGHT, hang], tests=[TESTS.splitlines(), TESTS]) == [1.0, 0.0]


def test_extract_program_prefers_the_last_python_block():
    text = "```text\nnot code\n```\nfirst\n```python\nA = 1\n```\nthen\n```py\nA = 2\n```"
    assert extract_program(text) == "A = 2\n"
    assert extract_program("```\nB = 1\n```") == "B = 1\n"
    assert extract_program("sure:\n```python\nC = 1\n") == "C = 1\n"  # stopped before the closing fence
    assert extract_program("<answer>D = 1</answer>") == "D = 1"
    assert extract_program("E = 1") == "E = 1"
