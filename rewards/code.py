"""code_accuracy: does the completion's program pass the row's tests? (ladder.rewards.sandbox runs the
program in a jail and the tests in a judge process that only exchanges plain data with it)"""

from __future__ import annotations

import re

from ladder.rewards.text import answer_blocks, completion_text

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*)$", re.DOTALL)

# Per-program limits. A reward is called with dataset columns as keywords, so these are constants, not
# parameters: wrap code_accuracy (functools.partial of the sandbox call) for other limits.
TIMEOUT_S = 5.0
MEMORY_MB = 512


def extract_program(text: str) -> str:
    """The last ```python block (else the last ``` block of any language); an unclosed fence at the end
    (the model stopped early) counts up to the end; else the <answer> block; else the whole text."""
    blocks = FENCE.findall(text)
    python = [code for lang, code in blocks if lang.lower() in ("python", "python3", "py")]
    if python or blocks:
        return (python or [code for _, code in blocks])[-1]
    unclosed = OPEN_FENCE.search(text)
    if unclosed:
        return unclosed.group(1)
    answers = answer_blocks(text)
    return answers[-1] if answers else text


def _tests_source(tests) -> str | None:
    """A row's tests as Python source: a string of asserts, or a list of assert lines (MBPP style)."""
    if tests is None:
        return None
    if hasattr(tests, "tolist"):  # a numpy array, as datasets formatted for numpy or pandas hand lists over
        tests = tests.tolist()
    if not isinstance(tests, (str, list, tuple)):
        raise ValueError(f"code_accuracy: a row's tests must be Python source or a list of asserts, not "
                         f"{type(tests).__name__}")
    if isinstance(tests, (list, tuple)):
        tests = "\n".join(str(t) for t in tests if t)
    return tests if str(tests).strip() else None


def code_accuracy(completions, tests=None, **kwargs) -> list[float | None]:
    """1.0 if the completion's program passes the row's `tests` asserts in the sandbox, else 0.0.

    The program is extract_program(completion); `tests` is Python source calling its functions (MBPP's
    asserts, HumanEval's `check(candidate)` plus `check(entry_point)`) or a list of assert lines. None for
    rows without tests. Rows run in parallel, each program in its own jail, its tests in a judge process."""
    from ladder.rewards.sandbox import run_many

    rows = tests if tests is not None else [None] * len(completions)
    sources = [_tests_source(t) for t in rows]
    todo = [i for i, src in enumerate(sources) if src is not None]
    results = run_many([extract_program(completion_text(completions[i])) for i in todo],
                       [sources[i] for i in todo], timeout=TIMEOUT_S, memory_mb=MEMORY_MB)
    out: list[float | None] = [None] * len(completions)
    for i, result in zip(todo, results):
        out[i] = 1.0 if result.ok else 0.0
    return out
