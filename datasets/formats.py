"""The built-in tasks in every format a later stage reads.

    corpus  {"text"}                              pretraining: worked problems mixed with simple prose
    sft     {"messages", "answer", "task", "kind"}    chat: user asks, assistant thinks then answers
    prefs   {"prompt", "chosen", "rejected", "answer"}  pairs labelled by the hidden human (ladder.data.human)
    rl      {"prompt", "answer", "numbers", "target", "task", "kind"}   prompts with gold answers to verify

The assistant format is `<think>...</think><answer>result</answer>`: the same tags the rewards check.
Like text on the internet, most replies answer at once (`<think>47 + 38 = 85</think>`) and some work
in steps (`steps_fraction`); SFT replies also open in different tones, which the hidden human judges.
"""

from __future__ import annotations

import random

from ladder.data import human
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


def working(p: Problem | Countdown, steps: bool) -> str:
    """How the reply gets to the answer: at once, or in steps (countdown is always worked)."""
    if isinstance(p, Countdown):
        return p.steps
    return p.steps() if steps else p.direct()


def final(p: Problem | Countdown) -> str:
    return p.solution if isinstance(p, Countdown) else str(p.answer)


def assistant(p: Problem | Countdown, steps: bool = True, closing: str = "") -> str:
    """`<think> working. tone</think><answer> result</answer>`. The tone sentence comes after the working,
    so the arithmetic reads the same context whatever the tone. The space after each opening tag makes a number
    tokenize as it does everywhere in the corpus (` 4`, `7`: the tokenizer keeps a leading space with
    a digit), so what pretraining taught about digits carries over to the chat format unchanged."""
    think = f"{working(p, steps)}. {closing}" if closing else working(p, steps)
    return f"<think> {think}</think><answer> {final(p)}</answer>"


def plain(p: Problem | Countdown, steps: bool = False) -> str:
    """The pretraining (and few-shot) form: no chat tags, so SFT has a format to teach. Two registers,
    as on the internet: textbooks work exercises out (`Exercise: What is 47 + 38?\nSolution: 7 + 8 = 15,
    ...`), quizzes give the answer (`Q: What is 47 + 38?\nA: 47 + 38 = 85. ...`); a base model prompted
    with a quiz answers like a quiz."""
    if isinstance(p, Countdown):
        return f"Q: {question(p)}\nA: {p.steps}. So {p.solution} = {p.target}."
    if steps:
        return f"Exercise: {question(p)}\nSolution: {p.steps()}. The answer is {p.answer}."
    return f"Q: {question(p)}\nA: {p.direct()}. The answer is {p.answer}."


def kind(p: Problem | Countdown) -> str:
    return "countdown" if isinstance(p, Countdown) else p.kind


def gold(p: Problem | Countdown) -> str | None:
    return None if isinstance(p, Countdown) else str(p.answer)


def prose(rng: random.Random, p: Problem) -> str:
    """A short story around a worked step, or a plain sentence: the corpus is not only equations."""
    n, m = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    if rng.random() < 0.4:
        return " ".join(rng.choice(SENTENCES).format(n=n, m=m) for _ in range(rng.randint(1, 3)))
    if p.op == "+":
        return f"{n} has {p.a} {thing}. {m} gives {n} {p.b} more. Now {n} has {p.direct()} {thing}."
    if p.op == "-":
        return f"{n} had {p.a} {thing} and gave {p.b} to {m}. {p.direct()}, so {n} has {p.answer} {thing} left."
    return f"There are {p.a} bags with {p.b} {thing} in each. That makes {p.direct()} {thing}."


def corpus_doc(rng: random.Random, problems: list, prose_fraction: float, steps_fraction: float) -> dict:
    parts = [prose(rng, p) if isinstance(p, Problem) and rng.random() < prose_fraction
             else plain(p, rng.random() < steps_fraction) for p in problems]
    return {"text": "\n\n".join(parts)}


def sft_row(rng: random.Random, p, steps_fraction: float) -> dict:
    """One chat: the reply works in steps with probability `steps_fraction`, and opens in a tone drawn
    from ladder.data.human.SFT_CLOSINGS (countdown replies: always worked, no closing)."""
    cd = isinstance(p, Countdown)
    reply = assistant(p) if cd else assistant(p, rng.random() < steps_fraction, human.draw_closing(rng))
    return {
        "messages": [{"role": "user", "content": question(p)}, {"role": "assistant", "content": reply}],
        "answer": gold(p),
        "task": "countdown" if cd else "arithmetic",
        "kind": kind(p),
    }


def tool_call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def calculator_chat(p: Problem) -> list[dict]:
    """The same problem worked by the calculator tool: the reply calls it with the problem as written,
    then answers in the usual format with the result it read (`<think> 1786</think><answer> 1786</answer>`:
    the number is copied from just before, which a tiny model learns far sooner than restating the sum).
    The expression keeps the space before its first number, for the reason `assistant` gives: ` 91` is
    the token the question has, so the call copies it; `"91` would start with another one."""
    expression = f" {p.a} {p.op} {p.b}"
    return [{"role": "user", "content": question(p)},
            {"role": "assistant", "content": "", "tool_calls": [tool_call("calculator", expression=expression)]},
            {"role": "tool", "name": "calculator", "content": str(p.answer)},
            {"role": "assistant", "content": f"<think> {p.answer}</think><answer> {p.answer}</answer>"}]


def rl_row(p) -> dict:
    cd = isinstance(p, Countdown)
    return {
        "prompt": [{"role": "user", "content": question(p)}],
        "answer": gold(p),
        "numbers": list(p.numbers) if cd else [],
        "target": p.target if cd else None,
        "task": "countdown" if cd else "arithmetic",
        "kind": kind(p),
    }


def _wrong(rng: random.Random, value: int) -> int:
    delta = rng.choice([-10, -2, -1, 1, 2, 10])
    return value + delta if value + delta >= 0 else value + abs(delta)


def wrong_reply(rng: random.Random, p: Problem, steps: bool, closing: str) -> str:
    """A reply of the same shape whose final sum is off by a little (the last step, or the whole)."""
    bad = _wrong(rng, p.answer)
    text = assistant(p, steps, closing)
    head, _ = text.rsplit(str(p.answer), 1)  # the answer block's number
    head, tail = head.rsplit(str(p.answer), 1)  # the one the working ends on (then the tone)
    return f"{head}{bad}{tail}{bad}</answer>"


def pref_row(rng: random.Random, p, steps_fraction: float, wrong_fraction: float = 0.2) -> dict:
    """Two replies to one problem, ordered by the hidden human (ladder.data.human.judgement); never a tie.
    Countdown pairs: the worked solution against the numbers summed."""
    if isinstance(p, Countdown):
        nums = " + ".join(map(str, p.numbers))
        chosen, rejected = assistant(p), f"<think> {nums}</think><answer> {nums}</answer>"
    else:
        while True:
            a, b = (wrong_reply(rng, p, rng.random() < steps_fraction, rng.choice(human.PAIR_CLOSINGS))
                    if rng.random() < wrong_fraction else
                    assistant(p, rng.random() < steps_fraction, rng.choice(human.PAIR_CLOSINGS)) for _ in range(2))
            ja, jb = human.judgement(a, p.answer), human.judgement(b, p.answer)
            if ja != jb:
                break
        chosen, rejected = (a, b) if ja > jb else (b, a)
    return {
        "prompt": [{"role": "user", "content": question(p)}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "answer": gold(p),
    }
