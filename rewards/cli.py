"""`ladder rewards list` shows the built-in rewards; `ladder rewards check SPEC` loads and validates one."""

from __future__ import annotations

import sys

from ladder.errors import LadderError

SAMPLE = {
    "completions": ["<think>2 + 3 = 5</think><answer>5</answer>", "<think>7 * 3 + 4</think><answer>7 * 3 + 4</answer>",
                    "The answer is 9", [{"role": "assistant", "content": "```python\ndef f():\n    return 1\n```"}]],
    "answer": ["5", None, "8", None],
    "numbers": [[], [7, 3, 4], [], []],
    "target": [None, 25, None, None],
    "tests": [None, None, None, "assert f() == 1"],
}


def main(argv=None) -> int:
    from ladder.rewards import REWARDS, load_rewards, validate_rewards

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] == "list":
        width = max(map(len, REWARDS))
        for name, fn in REWARDS.items():
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            print(f"{name:<{width}}  {doc}")
        print("\ncustom rewards: 'package.module:function' or 'path/to/file.py:function' "
              "with the signature fn(completions, **columns) -> list[float | None]")
        return 0
    if argv[0] == "check" and len(argv) == 2:
        fns, _ = load_rewards([argv[1]])
        validate_rewards(fns, SAMPLE)
        print(f"{argv[1]}: ok, returned {fns[0](SAMPLE['completions'], **{k: v for k, v in SAMPLE.items() if k != 'completions'})}")
        return 0
    raise LadderError("usage: ladder rewards list | ladder rewards check SPEC")


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
