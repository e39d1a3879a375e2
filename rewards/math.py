"""math_accuracy: is the final answer mathematically equal to the gold answer (math-verify)?"""

from __future__ import annotations

import threading

from ladder.rewards.text import completion_text, extract_answer


def _timeouts() -> dict:
    """math-verify guards parsing with signal.alarm, which only works on the main thread: off it
    (TRL reward workers, Gradio handlers) it would fail and score a right answer 0. There we turn
    its timeouts off; on the main thread they stay on."""
    if threading.current_thread() is threading.main_thread():
        return {}
    return {"parsing_timeout": None}


def is_equivalent(answer: str, gold: str) -> bool:
    from math_verify import parse, verify

    if len(answer) > 200:  # with timeouts off, bound the work instead: no real answer is this long
        return False

    kw = _timeouts()
    gold_parsed = parse(f"${gold}$", **kw) or parse(str(gold), **kw)
    pred_parsed = parse(f"${answer}$", **kw) or parse(str(answer), **kw)
    if not gold_parsed or not pred_parsed:
        return answer.strip() == str(gold).strip()
    return bool(verify(gold_parsed, pred_parsed, **({"timeout_seconds": None} if kw else {})))


def math_accuracy(completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 if the final answer equals the gold `answer` column (math-verify), else 0.0; None without gold.

    The final answer is the last <answer> block, else the last \\boxed{}, else the last number.
    Equivalent forms count: 0.5 = 1/2 = \\frac{1}{2}, 408 = 408.0, 1,000 = 1000. None for rows whose
    gold answer is missing or empty (e.g. countdown rows in a mixed dataset)."""
    golds = answer if answer is not None else [None] * len(completions)
    out: list[float | None] = []
    for completion, gold in zip(completions, golds):
        if gold is None or str(gold).strip() == "":
            out.append(None)
            continue
        pred = extract_answer(completion_text(completion))
        out.append(1.0 if pred is not None and is_equivalent(pred, str(gold)) else 0.0)
    return out
