"""Countdown: reach a target from given numbers with + - * / (each number used at most once).

Problems are built backwards from a random expression over a random subset of the numbers,
so every problem is solvable; the answer is an expression, checked by the countdown reward.
The target is never one of the given numbers: otherwise the bare number would be a free answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Countdown:
    numbers: tuple[int, ...]
    target: int
    solution: str  # one expression that reaches the target
    steps: str  # the same, one operation at a time: "7 * 3 = 21, 21 + 4 = 25"

    @property
    def key(self) -> str:
        return f"{sorted(self.numbers)}->{self.target}"


def _combine(rng: random.Random, items: list[tuple[Fraction, str]], steps: list[str]):
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (x, ex), (y, ey) = items[i], items[j]
        op = rng.choice("+-*/")
        if op == "-" and x < y:
            (x, ex), (y, ey) = (y, ey), (x, ex)
        if op == "/" and (y == 0 or x % y != 0 or y == 1):
            op = "+"
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else x}[op]
        steps.append(f"{x} {op} {y} = {value}")
        expr = f"({ex} {op} {ey})"
        items = [it for k, it in enumerate(items) if k not in (i, j)] + [(value, expr)]
    return items[0]


def sample(rng: random.Random, n_numbers: int = 3, max_number: int = 20, max_target: int = 100) -> Countdown:
    while True:
        numbers = [rng.randint(1, max_number) for _ in range(n_numbers)]
        used = rng.sample(numbers, rng.randint(2, n_numbers))
        steps: list[str] = []
        value, expr = _combine(rng, [(Fraction(v), str(v)) for v in used], steps)
        # a target among the numbers (e.g. 3 * 4 = 12 with 12 also given) would make the bare
        # number a free answer: draw again
        if value.denominator == 1 and 1 <= value <= max_target and int(value) not in numbers:
            expr = expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr
            return Countdown(tuple(numbers), int(value), expr, ", ".join(steps))


def generate(n: int, seed: int, n_numbers: int = 3, exclude: set[str] = frozenset(), **kw) -> list[Countdown]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = sample(rng, n_numbers, **kw)
        if p.key not in exclude:
            out.append(p)
    return out
