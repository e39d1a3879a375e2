import ast
from collections import Counter
from fractions import Fraction

from ladder.data import countdown


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
