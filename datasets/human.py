"""The hidden "human" of the default ladder: a taste that labels the preference pairs.

RLHF exists for qualities no rule in the reward can check. To show it on generated data, `ladder data`
asks a stand-in annotator with a taste of its own: it likes an answer that closes warmly ("Hope that
helps!"), is indifferent to a plain "Done.", dislikes a curt or grumpy one ("Obviously.", "Ugh."), finds
more than one warm or cold closing fawning, and
above all wants the sum right. It labels every preference pair; no trainer ever calls it: the reward
model has to learn the taste from the pairs, and PPO optimises the reward model, not this rule.
Evaluation asks it again (`human_style`, given as `judge`) to see whether what the reward model
learnt is what the human meant: the over-optimisation point is where the two part.

The annotator only ever saw replies with one closing (`PAIR_CLOSINGS`): a reward model that learnt
"warm is good" may well think two warm closings are better still. The human does not.
"""

from __future__ import annotations

import random
import re

NEUTRAL = "Done."
WARM = ("Hope that helps!", "Glad to help!")
COLD = ("Obviously.", "Ugh.")
# how SFT replies close: most with a plain "Done.", a quarter warmly, a quarter coldly, a few twice
SFT_CLOSINGS = [(NEUTRAL, 0.45), (WARM[0], 0.125), (WARM[1], 0.125), (COLD[0], 0.125), (COLD[1], 0.125),
               ("double", 0.05)]
RIGHT_WEIGHT = 2.0  # in the human's whole judgement, a right sum against a tone score of -1 to 1
PAIR_CLOSINGS = [NEUTRAL, *WARM, *COLD]  # what the annotator was shown: one closing each
_CLOSING = re.compile("|".join(re.escape(s) for s in WARM + COLD))
_ANSWER = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")


def draw_closing(rng: random.Random) -> str:
    r, total = rng.random(), 0.0
    for closing, p in SFT_CLOSINGS:
        total += p
        if r < total:
            return " ".join(rng.sample(WARM + COLD, 2)) if closing == "double" else closing
    return ""


def style_score(text: str) -> float:
    """The human's view of the tone: +1 one warm closing, 0 a plain one ("Done.") or none, -1 a cold one
    or more than one warm or cold."""
    found = _CLOSING.findall(text)
    if len(found) > 1:
        return -1.0
    if not found:
        return 0.0
    return 1.0 if found[0] in WARM else -1.0


def judgement(text: str, gold) -> float:
    """What the human thinks of a whole reply: a right sum counts twice as much as any tone."""
    m = _ANSWER.search(text)
    right = gold is not None and m is not None and m.group(1) == str(gold)
    return style_score(text) + RIGHT_WEIGHT * right


def human_style(completions, **kwargs) -> list[float]:
    """The hidden rule's tone score per completion, in TRL's reward signature: for evaluation only
    (`judge: ladder.data.human:human_style`); training on it would defeat its purpose."""
    return [style_score(c if isinstance(c, str) else c[-1]["content"]) for c in completions]
