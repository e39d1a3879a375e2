"""`ladder rewards list` shows the built-in rewards; `ladder rewards check SPEC` loads and validates one.

`check` runs the same validation a GRPO or PPO stage runs before training, on a tiny built-in batch
that has a row for every built-in task (arithmetic, countdown, code), so a custom reward can be tried
without a dataset.
"""

from __future__ import annotations

import sys

from ladder.errors import LadderError

USAGE = "usage: ladder rewards list | ladder rewards check SPEC   (SPEC: name, module:function or file.py:function)"

# One row per kind of task; each column is None where it does not apply, as in a mixed dataset.
SAMPLE = {
    "prompts": ["What is 2 + 3?", "Reach 25 with 7, 3, 4.", "What is 4 + 4?", "Write f() returning 1."],
    "completions": ["<think>2 + 3 = 5</think><answer>5</answer>", "<think>7 * 3 + 4</think><answer>7 * 3 + 4</answer>",
                    "The answer is 9", [{"role": "assistant", "content": "```python\ndef f():\n    return 1\n```"}]],
    "answer": ["5", None, "8", None],
    "numbers": [None, [7, 3, 4], None, None],
    "target": [None, 25, None, None],
    "tests": [None, None, None, "assert f() == 1"],
}


def main(argv=None) -> int:
    from ladder.rewards import REWARDS, load_rewards, validate_rewards

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if not argv or argv == ["list"]:
        width = max(map(len, REWARDS))
        for name, fn in REWARDS.items():
            summary = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph, whole
            print(f"{name:<{width}}  {summary}")
        print("\ncustom rewards: 'package.module:function' or 'path/to/file.py:function' "
              "with the signature fn(completions, **columns) -> list[float | None]")
        return 0
    if argv[0] == "check" and len(argv) == 2:
        fns, _ = load_rewards([argv[1]])
        validate_rewards(fns, SAMPLE)
        columns = {k: v for k, v in SAMPLE.items() if k != "completions"}
        print(f"{argv[1]}: ok, on the sample batch it returned {fns[0](SAMPLE['completions'], **columns)}")
        return 0
    raise LadderError(USAGE)


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
