"""Reward functions, all with TRL's signature: `fn(completions, **columns) -> list[float | None]`.

`completions` are strings or chat message lists; dataset columns arrive as keyword lists of the
same length (TRL also passes `prompts`, `completion_ids`, `trainer_state`: every function takes
**kwargs). None means "not applicable to this row" (e.g. math_accuracy on a countdown row).
"""

from ladder.rewards.abstain import abstained, abstention_reward
from ladder.rewards.code import code_accuracy
from ladder.rewards.countdown import countdown_accuracy
from ladder.rewards.format import format_reward, length_penalty
from ladder.rewards.math import math_accuracy
from ladder.rewards.text import completion_text, extract_answer
from ladder.rewards.tool_use import tool_cost

REWARDS = {
    "math_accuracy": math_accuracy,
    "countdown_accuracy": countdown_accuracy,
    "code_accuracy": code_accuracy,
    "format_reward": format_reward,
    "length_penalty": length_penalty,
    "abstention_reward": abstention_reward,
    "tool_cost": tool_cost,
}

# plugins imports REWARDS lazily (its built-in names), so it comes after the registry
from ladder.rewards.plugins import load_reward, load_rewards, sample_batch, validate_rewards  # noqa: E402

__all__ = ["REWARDS", "completion_text", "extract_answer", "load_reward", "load_rewards", "sample_batch",
           "validate_rewards",
           "math_accuracy", "countdown_accuracy", "code_accuracy", "format_reward", "length_penalty",
           "abstention_reward", "abstained", "tool_cost"]
