"""The built-in tasks in every format a later stage reads.

    corpus  {"text"}                              pretraining: worked problems mixed with simple prose
    sft     {"messages", "answer", "task"}        chat: user asks, assistant reasons then answers
    prefs   {"prompt", "chosen", "rejected"}      preference pairs: correct and well-formed vs not
    rl      {"prompt", "answer", "numbers", "target", "task"}   prompts with gold answers to verify

The assistant format is `<think>steps</think><answer>result</answer>`: the same tags the rewards check.
"""

from __future__ import annotations

import random

from ladder.data.arithmetic import Problem
from ladder.data.countdown import Countdown

NAMES = ["Sam", "Ann", "Tom", "Mia", "Leo", "Ava", "Ben", "Zoe", "Max", "Ivy"]
THINGS = ["apples", "books", "coins", "cards", "stones", "pens", "cups", "shells"]
SENTENCES = [
    "The sun is warm today.", "{n} likes to read books.", "The cat sleeps on the mat.",
    "{n} walks to the park.", "We count the birds in the tree.", "{n} has a red hat.",
    "Numbers help us to count and to share.", "The box is on the table.", "{n} and {m} play a game.",
    "It is fun to add and take away.", "{n} writes the sum on the board.", "The day is long and bright.",
]


def question(p: Problem | Countdown) -> str:
    if isinstance(p, Countdown):
        nums = ", ".join(map(str, p.numbers))
        return f"Use the numbers {nums} to make {p.target}. Use + - * / and each number at most once."
    return f"What is {p.a} {p.op} {p.b}?"


def assistant(p: Problem | Countdown) -> str:
    if isinstance(p, Countdown):
        return f"<think>{p.steps}</think><answer>{p.solution}</answer>"
    return f"<think>{p.steps()}</think><answer>{p.answer}</answer>"


def plain(p: Problem | Countdown) -> str:
    """The pretraining (and few-shot) form: no chat tags, so SFT has a format to teach."""
    if isinstance(p, Countdown):
        return f"Q: {question(p)}\nA: {p.steps}. So {p.solution} = {p.target}."
    return f"Q: {question(p)}\nA: {p.steps()}. The answer is {p.answer}."


def gold(p: Problem | Countdown) -> str | None:
    return None if isinstance(p, Countdown) else str(p.answer)


def prose(rng: random.Random, p: Problem) -> str:
    """A short story around a worked step, or a plain sentence: the corpus is not only equations."""
    n, m = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    if rng.random() < 0.4:
        return " ".join(rng.choice(SENTENCES).format(n=n, m=m) for _ in range(rng.randint(1, 3)))
    if p.op == "+":
        return f"{n} has {p.a} {thing}. {m} gives {n} {p.b} more. Now {n} has {p.steps()} {thing}."
    if p.op == "-":
        return f"{n} had {p.a} {thing} and gave {p.b} to {m}. {p.steps()}, so {n} has {p.answer} {thing} left."
    return f"There are {p.a} bags with {p.b} {thing} in each. That makes {p.steps()} {thing}."


def corpus_doc(rng: random.Random, problems: list, prose_fraction: float) -> dict:
    parts = [prose(rng, p) if isinstance(p, Problem) and rng.random() < prose_fraction else plain(p)
             for p in problems]
    return {"text": "\n\n".join(parts)}


def sft_row(p) -> dict:
    return {
        "messages": [{"role": "user", "content": question(p)}, {"role": "assistant", "content": assistant(p)}],
        "answer": gold(p),
        "task": "countdown" if isinstance(p, Countdown) else "arithmetic",
    }


def rl_row(p) -> dict:
    cd = isinstance(p, Countdown)
    return {
        "prompt": [{"role": "user", "content": question(p)}],
        "answer": gold(p),
        "numbers": list(p.numbers) if cd else [],
        "target": p.target if cd else None,
        "task": "countdown" if cd else "arithmetic",
    }


def _wrong(rng: random.Random, value: int) -> int:
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    return value + delta if value + delta >= 0 else value + abs(delta)


def rejected_text(rng: random.Random, p) -> str:
    """A worse answer: wrong arithmetic (well-formed), no answer block, or a bare guess."""
    kind = rng.randrange(3)
    if isinstance(p, Countdown):
        if kind == 0:
            nums = list(p.numbers)
            return f"<think>{' + '.join(map(str, nums))}</think><answer>{' + '.join(map(str, nums))}</answer>"
        if kind == 1:
            return f"<think>{p.steps}</think>"
        return f"The answer is {p.target}."
    if kind == 0:
        bad = _wrong(rng, p.answer)
        steps = p.steps().rsplit("=", 1)[0] + f"= {bad}"
        return f"<think>{steps}</think><answer>{bad}</answer>"
    if kind == 1:
        return f"<think>{p.steps()}</think> The answer is {p.answer}"
    return f"<answer>{_wrong(rng, p.answer)}</answer>"


def pref_row(rng: random.Random, p) -> dict:
    return {
        "prompt": [{"role": "user", "content": question(p)}],
        "chosen": [{"role": "assistant", "content": assistant(p)}],
        "rejected": [{"role": "assistant", "content": rejected_text(rng, p)}],
        "answer": gold(p),
    }
