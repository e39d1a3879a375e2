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


def test_tests_as_a_numpy_array_and_a_clear_error_for_anything_else():
    """A dataset formatted for numpy hands the asserts over as an array: they ran into the sandbox as an
    object without .encode (AttributeError). Anything that is neither source nor a list is named."""
    import numpy as np

    assert code_accuracy([RIGHT, WRONG], tests=[np.array(TESTS.splitlines())] * 2) == [1.0, 0.0]
    with pytest.raises(ValueError, match="tests must be Python source or a list of asserts, not int"):
        code_accuracy([RIGHT], tests=[5])


def test_extract_program_prefers_the_last_python_block():
    text = "```text\nnot code\n```\nfirst\n```python\nA = 1\n```\nthen\n```py\nA = 2\n```"
    assert extract_program(text) == "A = 2\n"
    assert extract_program("```\nB = 1\n```") == "B = 1\n"
    assert extract_program("sure:\n```python\nC = 1\n") == "C = 1\n"  # stopped before the closing fence
    assert extract_program("<answer>D = 1</answer>") == "D = 1"
    assert extract_program("E = 1") == "E = 1"


JAILS = [kind for kind in ("bwrap", "setuid") if sandbox.probe(kind) is None]


@pytest.fixture(params=JAILS)
def each_jail(request, monkeypatch):
    monkeypatch.setenv("LADDER_SANDBOX", request.param)  # what code_accuracy's run_many picks up
    return request.param


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code.strip()}\n```\n"


# HumanEval rows as the dataset has them: the prompt and canonical solution make the program; the tests
# column is `test` plus `check(entry_point)`. Some tests call helpers the prompt defines (poly,
# encode_cyclic): those are the program's functions too.
HUMANEVAL_CHECK = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

'''
HUMANEVAL = [  # (program, wrong program, tests)
    ('''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than given threshold."""
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
''', "def has_close_elements(numbers, threshold):\n    return len(numbers) > 5\n",
     HUMANEVAL_CHECK + "check(has_close_elements)"),
    ('''def truncate_number(number: float) -> float:
    return number % 1.0
''', "def truncate_number(number):\n    return round(number % 1.0, 1)\n", '''

METADATA = {}


def check(candidate):
    assert candidate(3.5) == 0.5
    assert abs(candidate(1.33) - 0.33) < 1e-6
    assert abs(candidate(123.456) - 0.456) < 1e-6
check(truncate_number)'''),
    ('''from typing import List, Optional


def longest(strings: List[str]) -> Optional[str]:
    if not strings:
        return None

    maxlen = max(len(x) for x in strings)
    for s in strings:
        if len(s) == maxlen:
            return s
''', "def longest(strings):\n    return max(strings, key=len) if strings else ''\n", '''

def check(candidate):
    assert candidate([]) == None
    assert candidate(['x', 'y', 'z']) == 'x'
    assert candidate(['x', 'yyy', 'zzzz', 'www', 'kkkk', 'abc']) == 'zzzz'
check(longest)'''),
    ('''import math


def poly(xs: list, x: float):
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def find_zero(xs: list):
    begin, end = -1., 1.
    while poly(xs, begin) * poly(xs, end) > 0:
        begin *= 2.0
        end *= 2.0
    while end - begin > 1e-10:
        center = (begin + end) / 2.0
        if poly(xs, center) * poly(xs, begin) > 0:
            begin = center
        else:
            end = center
    return begin
''', '''import math


def poly(xs: list, x: float):
    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])


def find_zero(xs: list):
    return 0.0
''', '''

METADATA = {}


def check(candidate):
    import math
    import random
    rng = random.Random(42)
    import copy
    for _ in range(100):
        ncoeff = 2 * rng.randint(1, 4)
        coeffs = []
        for _ in range(ncoeff):
            coeff = rng.randint(-10, 10)
            if coeff == 0:
                coeff = 1
            coeffs.append(coeff)
        solution = candidate(copy.deepcopy(coeffs))
        assert math.fabs(poly(coeffs, solution)) < 1e-4

check(find_zero)'''),
    ('''def encode_cyclic(s: str):
    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]
    groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]
    return "".join(groups)


def decode_cyclic(s: str):
    return encode_cyclic(encode_cyclic(s))
''', '''def encode_cyclic(s: str):
    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]
    groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]
    return "".join(groups)


def decode_cyclic(s: str):
    return encode_cyclic(s)
''', '''

METADATA = {}


def check(candidate):
    from random import randint, choice
    import string

    letters = string.ascii_lowercase
    for _ in range(100):
        str = ''.join(choice(letters) for i in range(randint(10, 20)))
        encoded_str = encode_cyclic(str)
        assert candidate(encoded_str) == str

check(decode_cyclic)'''),
]

# MBPP rows: `tests` is the asserts (plus test_imports / test_setup_code), as ladder.data.transforms.mbpp
# makes it. Tuples, sets, floats through math (imported by the program only, as in the full config),
# and a class whose objects the tests build and pass back (task 601).
MBPP = [
    ("def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n  return (res) ",
     "def similar_elements(a, b):\n    return tuple(set(a) | set(b))",
     "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
     "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))\n"
     "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))"),
    ("def min_max(xs):\n    return (min(xs), max(xs))", "def min_max(xs):\n    return [min(xs), max(xs)]",
     "assert min_max([3, 1, 2]) == (1, 3)\nassert min_max([5]) == (5, 5)\nassert min_max([-1, 7]) == (-1, 7)"),
    ("import math\ndef area_circle(r):\n    return math.pi * r * r", "def area_circle(r):\n    return 3.14 * r * r",
     "assert math.isclose(area_circle(10), 314.1592653589793, rel_tol=1e-9)\n"
     "assert math.isclose(area_circle(1), 3.141592653589793, rel_tol=1e-9)\n"
     "assert math.isclose(area_circle(0.5), 0.7853981633974483, rel_tol=1e-9)"),
    ('''class Pair(object):
	def __init__(self, a, b):
		self.a = a
		self.b = b
def max_chain_length(arr, n):
	max = 0
	mcl = [1 for i in range(n)]
	for i in range(1, n):
		for j in range(0, i):
			if (arr[i].a > arr[j].b and
				mcl[i] < mcl[j] + 1):
				mcl[i] = mcl[j] + 1
	for i in range(n):
		if (max < mcl[i]):
			max = mcl[i]
	return max''', "class Pair(object):\n    def __init__(self, a, b):\n        self.a = a\n        self.b = b\n"
                   "def max_chain_length(arr, n):\n    return n",
     "assert max_chain_length([Pair(5, 24), Pair(15, 25),Pair(27, 40), Pair(50, 60)], 4) == 3\n"
     "assert max_chain_length([Pair(1, 2), Pair(3, 4),Pair(5, 6), Pair(7, 8)], 4) == 4\n"
     "assert max_chain_length([Pair(19, 10), Pair(11, 12),Pair(13, 14), Pair(15, 16), Pair(31, 54)], 5) == 5"),
]


def test_humaneval_and_mbpp_formats_pass_right_programs_and_fail_wrong_ones(each_jail):
    rows = HUMANEVAL + MBPP
    completions = [fenced(right) for right, _, _ in rows] + [fenced(wrong) for _, wrong, _ in rows]
    tests = [t for _, _, t in rows] * 2
    assert code_accuracy(completions, tests=tests) == [1.0] * len(rows) + [0.0] * len(rows)


LIARS = [  # programs that answer nothing right, each with a way to look right
    "class Yes:\n    def __eq__(self, other):\n        return True\ndef square(x):\n    return Yes()",
    "class I(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
    "def square(x):\n    return I(0)",
    "import os\nprint('__LADDER_OK_' + '0' * 32 + '__')\nos._exit(0)",
    "import sys\nsys.exit(0)",
    "import sys\nf = sys._getframe()\nwhile f.f_back:\n    f = f.f_back\nprint(list(f.f_locals))",
]


def test_programs_that_lie_score_zero(each_jail):
    assert code_accuracy([fenced(code) for code in LIARS], tests=[TESTS] * len(LIARS)) == [0.0] * len(LIARS)
