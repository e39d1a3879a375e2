import sys
import threading

import pytest

from ladder.rewards import abstention_reward, countdown_accuracy, extract_answer, format_reward, math_accuracy


@pytest.mark.parametrize("completion, gold, expected", [
    ("<think>17 * 24 = 408</think><answer>408</answer>", "408", 1.0),
    ("<answer>408.0</answer>", "408", 1.0),
    ("<answer>0.5</answer>", "1/2", 1.0),
    ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),
    ("so the result is \\boxed{12}", "12", 1.0),
    ("17 + 5 = 22. The answer is 22", "22", 1.0),
    ("<answer> 1,000 </answer>", "1000", 1.0),
    ("The total is 1,000 apples.", "1000", 1.0),
    ("<answer>\\boxed{\\frac{3}{4}}</answer>", "0.75", 1.0),
    ("<answer>407</answer>", "408", 0.0),
    ("<answer>408</answer> but really 407", "407", 0.0),  # the answer block wins over a later number
    ("<answer>2/3</answer>", "0.6", 0.0),
    ("no number here", "3", 0.0),
])
def test_equivalent_forms_count_and_wrong_answers_do_not(completion, gold, expected):
    assert math_accuracy([completion], answer=[gold]) == [expected]


def test_message_lists_and_rows_without_gold():
    msgs = [[{"role": "assistant", "content": "<answer>5</answer>"}], "<answer>5</answer>"]
    assert math_accuracy(msgs, answer=["5", None]) == [1.0, None]
    assert math_accuracy(["<answer>5</answer>"], answer=[""]) == [None]
    assert math_accuracy(["<answer>5</answer>"]) == [None]


def test_extract_answer_prefers_answer_block_then_boxed_then_last_number():
    assert extract_answer("1 2 <answer>3</answer> 4") == "3"
    assert extract_answer("\\boxed{\\frac{1}{2}} then 7") == "\\frac{1}{2}"
    assert extract_answer("1 then 2") == "2"
    assert extract_answer("\\boxed{x^{2}} ") == "x^{2}"  # nested braces balanced
    assert extract_answer("nothing") is None


def test_correct_off_the_main_thread():
    """math-verify's signal-based timeout fails off the main thread; a right answer must still score 1."""
    out = []
    batch = ["<answer>1/2</answer>", "<answer>3</answer>"]
    t = threading.Thread(target=lambda: out.append(math_accuracy(batch, answer=["0.5", "4"], trainer_state=None)))
    t.start()
    t.join()
    assert out == [[1.0, 0.0]]


# --- MATH-style answers: the final answer span goes to math-verify's LaTeX/expression extraction ---

@pytest.mark.parametrize("completion, gold", [
    ("We need f(x) > 0 for all x, which holds exactly when x > 1. The final answer is $(1, +\\infty)$",
     "(1,\\infty)"),
    ("Multiplying out, 9x = 10, so the answer is $\\frac{10}{9}$.", "\\frac{10}{9}"),
    ("Setting x = 0 gives f(f(y)) = y, and then f(y) = y for every y.\n\nThe answer is $f(y) = y$.", "f(y) = y"),
    ("The probability that no letter lands in its envelope tends to 1/e, so the final answer is "
     "$1 - \\frac{1}{e}$. I hope it is correct.", "1 - \\frac{1}{e}"),
    ("The two solutions are 2 and 7, so the answer is $(2, 7)$.", "(2,7)"),
    ("Both roots work: the answer is $\\{-3, 3\\}$.", "\\{-3,3\\}"),
    ("So x lies in the interval $[2, 5)$, and the final answer is $[2, 5)$.", "[2,5)"),
    ("Checking the options, only the third works. The answer is $\\text{(C)}$.", "\\text{(C)}"),
    ("Checking the options, only the third works. The answer is \\text{(C)}.", "\\text{(C)}"),
    ("Counting by hundreds, the total is 1 000.", "1000"),
    ("The ratio is 2/5, i.e. the answer is .4", "0.4"),
    ("<answer>1 000</answer>", "1000"),
    ("<answer>1\\,000</answer>", "1,000"),
    ("<answer>.4</answer>", "\\frac{2}{5}"),
    ("<answer>\\text{Monday}</answer>", "\\text{Monday}"),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
])
def test_math_style_final_answers_count(completion, gold):
    assert math_accuracy([completion], answer=[gold]) == [1.0]


@pytest.mark.parametrize("completion, gold", [
    ("Multiplying out, 9x = 10, so the answer is $\\frac{10}{9}$.", "\\frac{9}{10}"),
    ("The final answer is $(1, +\\infty)$", "[1,\\infty)"),
    ("The answer is $f(y) = 2y$.", "f(y) = y"),
    ("The final answer is $1 - \\frac{1}{e}$.", "\\frac{1}{e}"),
    ("Checking the options, only the third works. The answer is $\\text{(C)}$.", "\\text{(D)}"),
])
def test_math_style_wrong_answers_do_not(completion, gold):
    """The text around the answer holds other numbers (9, 10, 1): none of them may be taken for it."""
    assert math_accuracy([completion], answer=[gold]) == [0.0]


@pytest.mark.parametrize("completion", ["<answer>−5</answer>", "The answer is −5.", "So x = −5", "\\boxed{−5}"])
def test_unicode_minus_is_a_minus(completion):
    assert math_accuracy([completion, completion], answer=["-5", "5"]) == [1.0, 0.0]


# --- bounded time: pathological answers are refused before parsing, on every thread ---

PATHOLOGICAL = ["<answer>9^{9^{9}}</answer>", "<answer>9^9^9</answer>", "<answer>9**9**9</answer>",
                "The answer is $9^{9^{9}}$.", "\\boxed{10^{10^{10}}}", "<answer>e^{e^{e^{10}}}</answer>",
                "<answer>9^{999999}</answer>", "<answer>(x+1)^{10000}</answer>", "<answer>100000!</answer>",
                "<answer>(10!)!</answer>", "<answer>\\binom{1000000}{500000}</answer>",
                "<answer>" + "9" * 150 + "</answer>", "The answer is " + "9" * 150]


def _timed(fn):
    import time

    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


@pytest.mark.timeout(60)
def test_pathological_answers_score_zero_fast_on_the_main_thread():
    math_accuracy(["<answer>\\frac{1}{2}</answer>"], answer=["0.5"])  # imports out of the timing
    result, seconds = _timed(lambda: math_accuracy(PATHOLOGICAL, answer=["85"] * len(PATHOLOGICAL)))
    assert result == [0.0] * len(PATHOLOGICAL)
    assert seconds < 0.5, seconds


OFF_MAIN_THREAD = """
import json, sys, threading, time
from ladder.rewards import math_accuracy
answers = json.loads(sys.argv[1])
math_accuracy(["<answer>\\\\frac{1}{2}</answer>"], answer=["0.5"])  # imports out of the timing
out = []
def check():
    t = time.perf_counter()
    out.append((math_accuracy(answers, answer=["85"] * len(answers)), time.perf_counter() - t))
worker = threading.Thread(target=check)
worker.start()
worker.join()
print(json.dumps(out[0]))
"""


def test_pathological_answers_score_zero_fast_off_the_main_thread():
    """Off the main thread math-verify runs without its signal timeouts: 9^{9^{9}} used to hold the GIL
    forever there. The worker thread runs in a child process, so a regression fails the test (timeout)
    instead of hanging the whole run."""
    import json
    import subprocess

    child = subprocess.run([sys.executable, "-c", OFF_MAIN_THREAD, json.dumps(PATHOLOGICAL)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr[-2000:]
    result, seconds = json.loads(child.stdout.strip().splitlines()[-1])
    assert result == [0.0] * len(PATHOLOGICAL)
    assert seconds < 0.5, seconds


@pytest.mark.timeout(60)
def test_slow_checks_are_cut_off_the_main_thread(monkeypatch):
    """What passes the cheap checks but is still slow for sympy stops at TIME_LIMIT off the main thread."""
    import ladder.rewards.math as m

    completion, gold = "<answer>(x+1)^{100}</answer>", "(x+2)^{100}"  # ~2 s of sympy without a limit
    math_accuracy(["<answer>\\frac{1}{2}</answer>"], answer=["0.5"])
    monkeypatch.setattr(m, "TIME_LIMIT", 0.1)
    out = []
    t = threading.Thread(target=lambda: out.append(_timed(lambda: math_accuracy([completion], answer=[gold]))),
                         daemon=True)
    t.start()
    t.join(10)
    assert out and out[0][0] == [0.0] and out[0][1] < 0.5, out
    monkeypatch.setattr(m, "TIME_LIMIT", 3.0)
    assert sys.getprofile() is None  # the hook is gone from this thread (it was never set here)
    out.clear()
    t = threading.Thread(target=lambda: out.append(math_accuracy(["<answer>2/4</answer>"], answer=["0.5"])))
    t.start()
    t.join(10)
    assert out == [[1.0]]  # the thread is fine afterwards


def test_big_but_reasonable_answers_still_count():
    completions = ["<answer>2^{2010}</answer>", "<answer>10!</answer>", "<answer>30^\\circ</answer>",
                   "<answer>10^{100}</answer>"]
    assert math_accuracy(completions, answer=["2^{2010}", "3628800", "30^\\circ", "10^{100}"]) == [1.0] * 4


# --- fast ---

def test_plain_integers_take_the_fast_path(monkeypatch):
    """The common case, an integer against an integer gold, never reaches math-verify."""
    import math_verify

    def boom(*a, **k):
        raise AssertionError("math-verify called for a plain integer")

    monkeypatch.setattr(math_verify, "parse", boom)
    monkeypatch.setattr(math_verify, "verify", boom)
    assert math_accuracy(["<answer>85</answer>", "<answer> 86 </answer>", "\\boxed{-3}", "<answer>1,000</answer>",
                          "<answer>408.0</answer>"], answer=["85", "85", "-3", "1000", "408"]) == \
        [1.0, 0.0, 1.0, 1.0, 1.0]


def test_integer_checks_per_second():
    import time

    completions = [f"<think>{i} + {i} = {2 * i}</think><answer>{i if i % 2 else i + 1}</answer>" for i in range(2000)]
    golds = [str(i) for i in range(2000)]
    t = time.perf_counter()
    scores = math_accuracy(completions, answer=golds)
    rate = len(completions) / (time.perf_counter() - t)
    assert scores == [float(i % 2) for i in range(2000)]
    assert rate >= 300, f"{rate:.0f} checks/s"


# --- a policy trying to fool the reward ---

@pytest.mark.parametrize("completion", [
    "<answer>" + ", ".join(str(i) for i in range(1, 101)) + "</answer>",  # every number (too long, too)
    "<answer>80, 81, 82, 83, 84, 85, 86, 87, 88, 89</answer>",
    "<answer>1, 2, 3, \\ldots, 100</answer>",
    "The answer is 80, 81, 82, 83, 84, 85, 86, 87, 88, 89",
    "The answer is 85, 86, 87",
    "<answer>85 or 86</answer>",
    "<answer>86 or 85</answer>",
    "<answer>either 85 or 86</answer>",
    "<answer>85 \\text{ or } 86</answer>",
    "<answer>$85$ or $86$</answer>",
    "<answer>85, 86</answer>",
    "<answer>85 and 86</answer>",
    "<answer>\\{85, 86\\}</answer>",
    "<answer>\\pm 85</answer>",
    "The answer is 85 or 86.",
    "The answer is 85 (or maybe 86).",
    "The answer is 85. Or 86.",
    "The answer is $85$ or $86$.",
    "The answer is ±85",
    "\\boxed{85} or \\boxed{86}",
    "\\boxed{85 \\text{ or } 86}",
    "<answer>84 < x < 86</answer>",  # the gold hidden in an inequality
    "<answer>x \\geq 85</answer>",
    "<answer>85 \\leq x \\leq 85</answer>",
    "<answer>x > 84 \\text{ and } x < 86</answer>",
    "The answer is $x \\geq 85$.",
    "The answer is x ≥ 85",
    "The answer is at least 85.",
    "The answer is more than 84 and less than 86.",
    "So x ≥ 85",
    "<answer>85</answer> <answer>86</answer>",  # the last block counts
    *[f"<answer>{r}</answer>" for r in (  # relations written other ways
        "x ⩾ 85", "x ⩽ 85", "85 ⩽ x", "x ≧ 85", "x \\leqq 86 \\land x \\geqq 85", "x \\succeq 85", "x \\eqslantgtr 85",
        "x \\to 85", "x → 85", "x \\Rightarrow 85", "x \\equiv 85", "x ≡ 85", "x \\simeq 85", "x \\cong 85",
        "x \\propto 85", "x ≈ 85")],
    "The answer is $x ⩾ 85$.",
    "The answer is $x \\geqq 85$.",
])
def test_hedged_answers_do_not_score(completion):
    assert math_accuracy([completion], answer=["85"]) == [0.0]


def test_hedging_guards_leave_real_answers_alone():
    completions = ["<answer>x = 85</answer>", "We have 3*4 = 12, 12 + 73 = 85.\n\nThe answer is 85.",
                   "<answer>(2, 3)</answer>", "<answer>1, 2</answer>", "<answer>x \\geq 2</answer>",
                   "The final answer is $1,000$.", "<think>5 < 7 or 8</think>The answer is 85"]
    golds = ["85", "85", "(2, 3)", "1, 2", "x \\ge 2", "1000", "85"]
    assert math_accuracy(completions, answer=golds) == [1.0] * len(completions)


@pytest.mark.parametrize("completion", [
    "The answer is 86. $85$",
    "The answer is 86.\n$85$",
    "The answer is 86\n\\[ 85 \\]",
    "<think>could be 85 or 86</think>\nThe final answer is $85$. The answer is 86.",
    [{"role": "assistant", "content": "Answer: 86. \\(85\\)"}],
])
def test_an_untagged_completion_has_one_answer_whatever_the_gold(completion):
    """Without <answer> or \\boxed{}, the stated answer ("the answer is 86") and math-verify's reading of the
    end ("$85$") were both tried against the gold: one completion was paid for 85 and for 86. It is now the
    stated answer, chosen before the gold is looked at."""
    assert math_accuracy([completion] * 2, answer=["85", "86"]) == [0.0, 1.0]
    assert abstention_reward([completion] * 2, answer=["85", "86"]) == [0.0, 1.0]


@pytest.mark.parametrize("fn, kwargs", [(math_accuracy, {"answer": ["85"]}), (format_reward, {}),
                                        (countdown_accuracy, {"numbers": [[7, 3, 4]], "target": [25]})])
def test_answer_tags_never_closed_cost_linear_time(fn, kwargs):
    """An opening tag repeated and never closed made the <answer> search quadratic: 256 KB took 27 s a reward.
    (A bound against that blow-up, generous for any machine; not a speed measurement.)"""
    import time

    start = time.perf_counter()
    assert fn(["<answer>7*3+4</answer>" + "<answer>" * 32_000], **kwargs)[0] in (0.0, 0.5, 1.0)
    assert time.perf_counter() - start < 2.0


def test_answer_blocks_are_the_regular_expressions_blocks():
    """answer_blocks searches less text than the plain findall, to the same result."""
    import random

    from ladder.rewards.text import ANSWER, answer_blocks

    rng = random.Random(0)
    parts = ["<answer>", "</answer>", "85", " ", "<think>", "x"]
    for _ in range(2000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        assert answer_blocks(text) == ANSWER.findall(text), text
