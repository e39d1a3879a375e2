"""Arithmetic problems with step-by-step worked solutions, deterministic by seed.

A tiny model cannot hold 2-digit sums as facts, so each solution breaks a problem into steps
it can: add or take the tens first, then the ones; multiply by splitting the second number.

    47 + 38 = 47 + 30 + 8 = 77 + 8 = 85
    85 - 38 = 85 - 30 - 8 = 55 - 8 = 47
    17 * 24 = 17 * 20 + 17 * 4 = 340 + 68 = 408
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

    def steps(self) -> str:
        return worked(self.a, self.op, self.b)


def worked(a: int, op: str, b: int) -> str:
    """The worked solution as one line of equalities ending in the answer."""
    if op == "*":
        if b < 10 and a < 10:
            return f"{a} * {b} = {a * b}"
        if b < 10:  # 17 * 4 = 10 * 4 + 7 * 4 = 40 + 28 = 68
            tens, ones = a - a % 10, a % 10
            if ones == 0:
                return f"{a} * {b} = {a * b}"
            return f"{a} * {b} = {tens} * {b} + {ones} * {b} = {tens * b} + {ones * b} = {a * b}"
        tens, ones = b - b % 10, b % 10
        if ones == 0:
            return f"{a} * {b} = {a} * {tens // 10} * 10 = {a * (tens // 10)} * 10 = {a * b}"
        return f"{a} * {b} = {a} * {tens} + {a} * {ones} = {a * tens} + {a * ones} = {a * b}"
    sign = 1 if op == "+" else -1
    if b < 10:
        return f"{a} {op} {b} = {a + sign * b}"
    tens, ones = b - b % 10, b % 10
    mid = a + sign * tens
    if ones == 0:
        return f"{a} {op} {b} = {mid}"
    return f"{a} {op} {b} = {a} {op} {tens} {op} {ones} = {mid} {op} {ones} = {mid + sign * ones}"


# Difficulty levels: operand ranges per operator. Subtraction keeps a >= b (answers are >= 0).
LEVELS = {
    1: {"+": ((0, 9), (0, 9)), "-": ((0, 9), (0, 9)), "*": ((0, 9), (0, 9))},
    2: {"+": ((10, 99), (1, 99)), "-": ((10, 99), (1, 99)), "*": ((10, 99), (2, 9))},
    3: {"+": ((100, 999), (10, 999)), "-": ((100, 999), (10, 999)), "*": ((10, 99), (10, 99))},
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
