"""Arithmetic problems, each with two ways to answer, deterministic by seed.

Every problem can be answered at once or worked out in steps a tiny model can carry: column
arithmetic made only of one-digit facts (and "take one away" / "add the carry"), ones first.

    direct  47 + 38 = 85
    steps   7 + 8 = 15, 4 + 3 = 7, 7 + 1 = 8, so 85          (47 + 38)
            15 - 8 = 7, 8 - 1 = 7, 7 - 3 = 4, so 47          (85 - 38)
            7 * 6 = 42, 4 * 6 = 24, 4 + 4 = 8, so 282        (47 * 6)

The steps read their digits straight from the question, and the two forms part at the first
digit (` 4` of 47 = 85, or ` 7` of 7 + 8): a single choice that RL can learn.

One-digit problems are facts: both forms are the fact itself. A 1.9M model answering two-digit
problems at once gets few right; working in steps it gets most of them right. That gap is what
the default ladder's RL rung finds (the seed's "models need tokens to think").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OPS = "+-*"


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def key(self) -> str:
        """Identity used to keep train and test disjoint."""
        return f"{self.a} {self.op} {self.b}"

    @property
    def answer(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def kind(self) -> str:
        """What the held-out report groups by: `1-digit +`, `2-digit -`, `3-digit *`, ..."""
        return f"{len(str(max(self.a, self.b)))}-digit {self.op}"

    def direct(self) -> str:
        return f"{self.key} = {self.answer}"

    def steps(self) -> str:
        return worked(self.a, self.op, self.b)


def _digits(n: int, width: int) -> list[int]:
    """Digits of n, ones first, padded with zeros to `width`."""
    return [(n // 10 ** i) % 10 for i in range(width)]


def _add_steps(a: int, b: int) -> list[str]:
    width = max(len(str(a)), len(str(b)))
    steps, written, carry = [], [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        s = x + y
        steps.append(f"{x} + {y} = {s}")
        if carry:
            steps.append(f"{s} + 1 = {s + 1}")
            s += 1
        carry, digit = divmod(s, 10)
        written.append(digit)
    return steps


def _sub_steps(a: int, b: int) -> list[str]:
    width = len(str(a))
    steps, borrow = [], False
    for x, y in zip(_digits(a, width), _digits(b, width)):
        if borrow and x == 0:  # borrowing through a zero: it becomes 9 and lends on
            steps.append("10 - 1 = 9")
            x, borrow = 9, True
        else:
            if borrow:
                steps.append(f"{x} - 1 = {x - 1}")
                x -= 1
            borrow = x < y
        top = x + 10 if borrow and x < y else x
        steps.append(f"{top} - {y} = {top - y}")
    return steps


def _mul_steps(a: int, b: int) -> list[str]:
    """a times one-digit b, ones first: each digit's product, its last digit plus the carry."""
    steps, carry = [], None
    for x in _digits(a, len(str(a))):
        p = x * b
        steps.append(f"{x} * {b} = {p}")
        if carry is None:
            carry = p // 10
            continue
        r = p % 10 + carry
        steps.append(f"{p % 10} + {carry} = {r}")
        carry = p // 10
        if r >= 10:
            steps.append(f"{carry} + 1 = {carry + 1}")
            carry += 1
    return steps


def worked(a: int, op: str, b: int) -> str:
    """The worked solution: `step, step, ..., so answer` (one-digit facts are stated directly)."""
    answer = {"+": a + b, "-": a - b, "*": a * b}[op]
    if a < 10 and b < 10:
        return f"{a} {op} {b} = {answer}"
    if op == "*" and b >= 10:
        if a < 10:  # one-digit times two-digit: swap so the one-digit number multiplies
            return ", ".join(_mul_steps(b, a)) + f", so {answer}"
        raise ValueError("worked steps cover multiplication by a one-digit number only")
    steps = {"+": _add_steps, "-": _sub_steps, "*": _mul_steps}[op](a, b)
    return ", ".join(steps) + f", so {answer}"


def step_facts() -> set[str]:
    """Keys of the two-digit facts that worked solutions use as steps: a teen minus a digit (borrowing)
    and a teen plus the carry. They are trained as steps, so they are never held out."""
    return ({f"{10 + x} - {y}" for x in range(10) for y in range(10) if 10 + x - y < 10}
            | {f"{s} + 1" for s in range(10, 20)})


# Difficulty levels: operand ranges per operator. Subtraction keeps a >= b (answers are >= 0).
LEVELS = {
    1: {"+": ((0, 9), (0, 9)), "-": ((0, 9), (0, 9)), "*": ((0, 9), (0, 9))},
    2: {"+": ((10, 99), (1, 99)), "-": ((10, 99), (1, 99)), "*": ((10, 99), (2, 9))},
    3: {"+": ((100, 999), (10, 999)), "-": ((100, 999), (10, 999)), "*": ((100, 999), (2, 9))},
}


def sample(rng: random.Random, level: int, ops: str = OPS) -> Problem:
    if level not in LEVELS:
        raise ValueError(f"arithmetic level must be one of {sorted(LEVELS)}, got {level}")
    op = rng.choice(ops)
    (alo, ahi), (blo, bhi) = LEVELS[level][op]
    a, b = rng.randint(alo, ahi), rng.randint(blo, bhi)
    if op == "-" and b > a:
        a, b = b, a
    return Problem(a, op, b)


def generate(n: int, seed: int, levels=(1, 2), ops: str = OPS, exclude: set[str] = frozenset(),
             unique: bool = False) -> list[Problem]:
    """`n` problems from the given levels (uniformly), never one whose key is in `exclude`."""
    rng = random.Random(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct arithmetic problems from levels {levels}")
        p = sample(rng, rng.choice(list(levels)), ops)
        if p.key in exclude or (unique and p.key in seen):
            continue
        seen.add(p.key)
        out.append(p)
    return out
