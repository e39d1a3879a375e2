"""countdown_accuracy: does the answer expression reach the target using the given numbers?

The expression is evaluated by walking its syntax tree (integers, + - * /, parentheses, unary
minus) with exact fractions: nothing the model writes is ever passed to eval().
"""

from __future__ import annotations

import ast
from collections import Counter
from fractions import Fraction

from ladder.rewards.text import answer_blocks, completion_text

OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
       ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def evaluate(expr: str) -> tuple[Fraction, list[int], int]:
    """Value of an arithmetic expression, the integers it uses and how many binary operations it
    applies; ValueError if not allowed."""
    used: list[int] = []
    ops = 0

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            nonlocal ops
            ops += 1
            return OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"not allowed: {type(node).__name__}")

    if len(expr) > 200:
        raise ValueError("expression too long")
    value = walk(ast.parse(expr.strip(), mode="eval"))
    return value, used, ops


def countdown_accuracy(completions, numbers=None, target=None, **kwargs) -> list[float | None]:
    """1.0 if the <answer> expression reaches `target` using each of `numbers` at most once, else 0.0.

    Integers, + - * / and parentheses only, evaluated exactly; "expr = 25" is read as "expr". At least
    one binary operation is required: a bare number (or "-(-25)", "(25)") is not a solution, even
    when it happens to be among the given numbers. Division by zero or anything else scores 0.0.
    None for rows without numbers/target (e.g. arithmetic rows)."""
    n = len(completions)
    numbers, target = numbers or [None] * n, target if target is not None else [None] * n
    out: list[float | None] = []
    for completion, nums, tgt in zip(completions, numbers, target):
        if nums is None or len(nums) == 0 or tgt is None:
            out.append(None)
            continue
        blocks = answer_blocks(completion_text(completion))
        if not blocks:
            out.append(0.0)
            continue
        expr = blocks[-1].split("=")[0]
        try:
            value, used, ops = evaluate(expr)
        except (ValueError, SyntaxError, ZeroDivisionError, RecursionError):
            out.append(0.0)
            continue
        fits = not (Counter(used) - Counter(_exact(x, "number") for x in nums))
        out.append(1.0 if fits and ops >= 1 and value == _exact(tgt, "target") else 0.0)
    return out


def _exact(value, field: str) -> Fraction:
    """A row's number or target as an exact value ("25", 25.0, 25.5 as themselves): int() truncated 25.5 to 25
    and 1.9 to 1, which paid expressions that reach neither."""
    try:
        return Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"countdown_accuracy: the row's {field} {value!r} is not a number") from None
