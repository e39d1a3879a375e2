import random
import re

import pytest

from ladder.data import arithmetic


def _chain_values(steps: str) -> list[int]:
    """Evaluate every expression of an 'a = b = c' chain (numbers and + - * only)."""
    values = []
    for expr in steps.split("="):
        assert re.fullmatch(r"[\d\s+*-]+", expr), expr
        values.append(eval(expr))  # test-only: the chain is our own generated arithmetic
    return values


@pytest.mark.parametrize("level", sorted(arithmetic.LEVELS))
def test_every_step_of_a_worked_solution_is_true(level):
    rng = random.Random(level)
    for _ in range(500):
        p = arithmetic.sample(rng, level)
        values = _chain_values(p.steps())
        assert set(values) == {p.answer}, p.steps()
        assert p.steps().endswith(f"= {p.answer}")


def test_examples_match_the_documented_shape():
    assert arithmetic.worked(17, "*", 24) == "17 * 24 = 17 * 20 + 17 * 4 = 340 + 68 = 408"
    assert arithmetic.worked(47, "+", 38) == "47 + 38 = 47 + 30 + 8 = 77 + 8 = 85"
    assert arithmetic.worked(85, "-", 38) == "85 - 38 = 85 - 30 - 8 = 55 - 8 = 47"


def test_deterministic_by_seed_and_levels_respected():
    a = arithmetic.generate(200, seed=3, levels=[2])
    assert a == arithmetic.generate(200, seed=3, levels=[2])
    assert a != arithmetic.generate(200, seed=4, levels=[2])
    assert all(10 <= p.a <= 99 for p in a)
    assert all(p.answer >= 0 for p in a)  # subtraction keeps a >= b


def test_exclude_and_unknown_level():
    test = arithmetic.generate(50, seed=0, levels=[1], unique=True)
    train = arithmetic.generate(500, seed=1, levels=[1], exclude={p.key for p in test})
    assert not {p.key for p in test} & {p.key for p in train}
    with pytest.raises(ValueError, match="level"):
        arithmetic.generate(1, seed=0, levels=[7])
