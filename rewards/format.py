"""Format rewards: does the completion follow `<think>…</think><answer>…</answer>`?"""

from __future__ import annotations

import re

from ladder.rewards.text import answer_blocks, completion_text, written_text

_TEXT = r"(?:(?!</?think>|</?answer>).)*"  # text without any of the four tags: one block of each, no nesting
FULL = re.compile(rf"^\s*<think>{_TEXT}</think>\s*<answer>{_TEXT}</answer>\s*$", re.DOTALL)


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 for exactly <think>…</think><answer>…</answer>, 0.5 for an answer block alone, else 0.0.

    Whitespace is allowed around and between the blocks. 0.5 for an answer block without that shape
    (no think block, text after it, repeated or nested blocks).

    The half point keeps a signal for a model that has learnt the answer tag but not yet the rest."""
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(1.0 if FULL.match(text) else 0.5 if answer_blocks(text) else 0.0)
    return out


def length_penalty(completions, max_length: int = 400, **kwargs) -> list[float]:
    """A small push towards short completions: -0.1 * min(1, characters / max_length), counting all the
    model wrote (with tools: every assistant turn, not the tools' output).

    Small on purpose: with weight 1 it breaks ties between right answers, it never outweighs one."""
    return [-0.1 * min(1.0, len(written_text(c)) / max_length) for c in completions]
