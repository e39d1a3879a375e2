import random
import re

import pytest

from ladder.data import arithmetic


def _steps(solution: str) -> list[str]:
    return solution.split(", ")


@pytest.mark.parametrize("level", sorted(arithmetic.LEVELS))
def test_every_step_is_true_and_the_solution_ends_on_the_answer(level):
    rng = random.Random(level)
    for _ in range(1000):
        p = arithmetic.sample(rng, level)
        steps = _steps(p.steps())
        assert steps[-1] == f"so {p.answer}" or (len(steps) == 1 and steps[0] == p.direct()), p.steps()
        for step in steps[:-1] if len(steps) > 1 else steps:
            left, right = step.split(" = ")
            assert re.fullmatch(r"\d+ [+*-] \d+", left), step
            assert eval(left) == int(right), (p.steps(), step)  # test-only: our own generated arithmetic


def test_steps_are_one_digit_facts_or_teen_borrows_and_carries():
    """What a tiny model can hold: every step is a one-digit fact, a teen minus a digit, or +1 carry."""
    rng = random.Random(0)
    facts = arithmetic.step_facts()
    for _ in range(2000):
        p = arithmetic.sample(rng, 2)
        for step in _steps(p.steps())[:-1]:
            a, op, b = step.split(" = ")[0].split()
            assert (int(a) < 10 and int(b) < 10) or f"{a} {op} {b}" in facts, (p.steps(), step)


def test_examples_match_the_documented_shape():
    assert arithmetic.worked(47, "+", 38) == "7 + 8 = 15, 4 + 3 = 7, 7 + 1 = 8, so 85"
    assert arithmetic.worked(85, "-", 38) == "15 - 8 = 7, 8 - 1 = 7, 7 - 3 = 4, so 47"
    assert arithmetic.worked(47, "*", 6) == "7 * 6 = 42, 4 * 6 = 24, 4 + 4 = 8, so 282"
    assert arithmetic.worked(26, "*", 8) == "6 * 8 = 48, 2 * 8 = 16, 6 + 4 = 10, 1 + 1 = 2, so 208"
    assert arithmetic.worked(7, "*", 8) == "7 * 8 = 56"
    assert arithmetic.Problem(47, "+", 38).direct() == "47 + 38 = 85"
    assert arithmetic.Problem(47, "*", 6).kind == "2-digit *" and arithmetic.Problem(7, "-", 3).kind == "1-digit -"


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
