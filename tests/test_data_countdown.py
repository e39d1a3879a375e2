import ast
from collections import Counter
from fractions import Fraction

from ladder.data import countdown
from ladder.rewards import countdown_accuracy


def _eval(node):
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
    return ops[type(node.op)](_eval(node.left), _eval(node.right))


def test_solutions_reach_the_target_with_given_numbers():
    for p in countdown.generate(300, seed=0):
        tree = ast.parse(p.solution, mode="eval").body
        assert _eval(tree) == p.target
        used = Counter(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant))
        assert not used - Counter(p.numbers), (p.solution, p.numbers)
        assert 1 <= p.target <= 100


def test_deterministic_by_seed():
    assert countdown.generate(50, seed=1) == countdown.generate(50, seed=1)
    assert countdown.generate(50, seed=1) != countdown.generate(50, seed=2)


def test_target_is_never_one_of_the_numbers():
    """Else the bare number is a free answer (~7.8% of problems used to be like that)."""
    for seed in range(3):
        for p in countdown.generate(1000, seed=seed):
            assert p.target not in p.numbers, p
    for n_numbers in (2, 4, 5):
        for p in countdown.generate(300, seed=0, n_numbers=n_numbers):
            assert p.target not in p.numbers, p


def test_bare_number_answers_score_zero_on_generated_problems():
    """The exploit end to end: answering one of the given numbers must never reach the target."""
    problems = countdown.generate(500, seed=3)
    for p in problems:
        bare = [f"<answer>{n}</answer>" for n in p.numbers]
        assert countdown_accuracy(bare, numbers=[list(p.numbers)] * len(bare), target=[p.target] * len(bare)) \
            == [0.0] * len(bare), p
    right = [f"<answer>{p.solution}</answer>" for p in problems]
    assert countdown_accuracy(right, numbers=[list(p.numbers) for p in problems],
                              target=[p.target for p in problems]) == [1.0] * len(problems)


def test_countdown_accuracy_requires_an_operation():
    """A bare number (however wrapped) is no solution, even when it is a given number equal to the target."""
    nums, tgt = [[25, 3, 4]], [25]
    for bare in ("25", " 25 ", "(25)", "((25))", "-(-25)", "25 = 25"):
        assert countdown_accuracy([f"<answer>{bare}</answer>"], numbers=nums, target=tgt) == [0.0], bare
    # one binary operation is enough
    assert countdown_accuracy(["<answer>21 + 4</answer>"], numbers=[[21, 4, 9]], target=[25]) == [1.0]
    assert countdown_accuracy(["<answer>-3 + 28</answer>"], numbers=[[28, 3]], target=[25]) == [1.0]
    assert countdown_accuracy(["<answer>(7 * 3) + 4 = 25</answer>"], numbers=[[7, 3, 4]], target=[25]) == [1.0]
