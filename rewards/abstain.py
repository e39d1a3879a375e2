"""abstention_reward: right > "I don't know" > wrong, so a policy is paid for knowing what it does not know.

What counts as abstaining: the final answer (ladder.rewards.text.extract_answer: the last <answer>
block, else the last \\boxed{}) is, as a whole, one of a few fixed phrases (ABSTAIN_PHRASES), compared
case-insensitively, without apostrophes ("I dont know" = "I don't know" = "I DON'T KNOW"), surrounding
whitespace, a \\text{...} wrapper or final punctuation. Nothing else abstains:

- "I don't know, 42" or "42 or I don't know": an answer, judged right or wrong like any other (a policy
  must not collect the abstention's credit while still placing a bet);
- "I don't know" in the thinking, then an answer: the answer counts, the thinking is not read;
- an empty answer block, or no answer block at all: not an abstention (an abstention has to be said,
  in the answer format; else a policy could be paid for saying nothing).

Right and wrong are math_accuracy's judgement, called as is: None rows (no gold answer) stay None, and
a right answer always scores `right`, whatever else it says. The weights are settings of the reward,
from a recipe: `{name: abstention_reward, args: {right: 1.0, abstain: 0.3, wrong: 0.0}}`.
"""

from __future__ import annotations

import re

from ladder.errors import LadderError
from ladder.rewards.math import math_accuracy
from ladder.rewards.text import completion_text, extract_answer

# After normalize(): lower case, no apostrophes, one space between words, no final . or !
ABSTAIN_PHRASES = frozenset({
    "i dont know", "i do not know", "dont know", "idk",
    "i dont know the answer", "i do not know the answer",
    "im not sure", "i am not sure", "not sure",
})
# defaults: an abstention is worth less than a right answer and more than a wrong one
RIGHT, ABSTAIN, WRONG = 1.0, 0.3, 0.0

_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018`")
_TEXT_WRAPPER = re.compile(r"^\\text\{(.*)\}$", re.DOTALL)


def normalize(answer: str) -> str:
    s = answer.strip()
    if (m := _TEXT_WRAPPER.match(s)) is not None:  # \boxed{\text{I don't know}}
        s = m.group(1)
    s = " ".join(s.translate(_APOSTROPHES).lower().split())
    return s.rstrip(".!").strip()


def abstained(completion) -> bool:
    """Does the completion's final answer say "I don't know" (one of ABSTAIN_PHRASES, as a whole)?"""
    answer = extract_answer(completion_text(completion))
    return answer is not None and normalize(answer) in ABSTAIN_PHRASES


def check_weights(right: float, abstain: float, wrong: float) -> None:
    """wrong <= abstain < right: otherwise the best policy is to abstain on everything (abstain >= right),
    or abstaining is worse than guessing and the reward is math_accuracy with extra steps (abstain < wrong)."""
    for name, value in (("right", right), ("abstain", abstain), ("wrong", wrong)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LadderError(f"reward 'abstention_reward': {name} must be a number, got {value!r}")
    if not wrong <= abstain < right:
        raise LadderError(f"reward 'abstention_reward': needs wrong <= abstain < right, got right={right}, "
                          f"abstain={abstain}, wrong={wrong}")


def abstention_reward(completions, answer=None, *, right: float = RIGHT, abstain: float = ABSTAIN,
                      wrong: float = WRONG, **kwargs) -> list[float | None]:
    """`right` for a right answer (math_accuracy), `abstain` for an answer that is only "I don't know"
    (abstained), `wrong` for anything else; None where math_accuracy has no gold to judge by."""
    check_weights(right, abstain, wrong)
    judged = math_accuracy(completions, answer=answer)
    return [None if j is None else float(right) if j == 1.0 else float(abstain) if abstained(c) else float(wrong)
            for c, j in zip(completions, judged)]
