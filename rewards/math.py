"""math_accuracy: is the final answer mathematically equal to the gold answer (math-verify)?

The final answer span is the last <answer> block, else the last \\boxed{}, else the end of the
completion (its last paragraph): there, what follows the last "the answer is" if it reads as one expression,
else what math-verify's own LaTeX and expression extraction finds ("... so the answer is $\\frac{10}{9}$.",
"The final answer is $(1, +\\infty)$"). One answer a completion, chosen before the gold is read. Before anything
is parsed, three cheap checks run on that span:

- pathological: towers and huge exponents (9^{9^{9}}), huge factorials, very long digit strings,
  whose evaluation can hold the GIL for minutes. They score 0.
- hedged: an answer that offers several values for a single-valued gold ("85 or 86", "84, 85, 86"),
  or that hides the gold in a relation ("x \\geq 85", "at least 85"), scores 0: a policy must not
  be paid for covering its bets.
- fast path: a plain number against a plain number (the common "<answer>85</answer>" vs "85")
  is compared exactly, without math-verify.

Time is bounded on every thread: on the main thread math-verify's own signal timeouts apply; off it
(TRL reward workers, Gradio handlers: signal.alarm only works on the main thread) a per-thread
profile hook stops the check after TIME_LIMIT seconds and it scores 0.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from contextlib import contextmanager
from fractions import Fraction

from ladder.rewards.text import answer_blocks, completion_text, last_boxed

MAX_SPAN = 200  # an <answer>/\boxed{} span longer than this is no real answer
MAX_TAIL = 600  # without one, at most this much of the end of the completion is read
MAX_DIGITS = 50  # a longer run of digits is refused
MAX_POW_DIGITS = 20_000  # numeric powers: at most about this many digits (2^{2010} has 606)
MAX_SYMBOLIC_EXPONENT = 100  # (x+1)^{200} vs 85 already takes math-verify half a second
MAX_FACTORIAL = 1000
TIME_LIMIT = 3.0  # seconds per check off the main thread

# ---------------------------------------------------------------------------------------------
# normalization

_DASHES = dict.fromkeys(map(ord, "\u2212\u2012\u2013\u2014\ufe63\uff0d"), "-")  # − ‒ – — ﹣ －
_UNICODE = str.maketrans({**_DASHES, "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",
                          "×": r"\times ", "÷": r"\div ", "·": r"\cdot ", "∞": r"\infty ", "π": r"\pi ",
                          "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ", "±": r"\pm ", "∓": r"\mp ",
                          "⩽": r"\le ", "⩾": r"\ge ", "≦": r"\le ", "≧": r"\ge ", "≈": r"\approx ",
                          "≡": r"\equiv ", "≃": r"\simeq ", "≅": r"\cong ", "∝": r"\propto ", "→": r"\to ",
                          "⇒": r"\Rightarrow ", "≺": r"\prec ", "≻": r"\succ ", "≼": r"\preceq ", "≽": r"\succeq "})
# "1 000", "1\,000", "1{,}000", "1~000": digit groups of three joined into one number
_GROUPS = re.compile(r"(?<![\d.,])\d{1,3}(?:(?: |\\,|\\ |\\;|\\!|~|\{,\})\d{3})+(?![\d])")
_GROUP_SEP = re.compile(r" |\\,|\\ |\\;|\\!|~|\{,\}")


def _normalize(text: str) -> str:
    text = text.translate(_UNICODE)
    return _GROUPS.sub(lambda m: _GROUP_SEP.sub("", m.group()), text)


_PLAIN = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_COMMAS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _plain_number(text: str) -> Fraction | None:
    """`85`, `-5`, `1,000`, `.4`, `$408.0$` as an exact number; None for anything else."""
    s = text.strip().strip("$").strip()
    if s.endswith("."):
        s = s[:-1]
    if _COMMAS.fullmatch(s):
        s = s.replace(",", "")
    if not _PLAIN.fullmatch(s) or len(s) > MAX_DIGITS:
        return None
    return Fraction(s)


# ---------------------------------------------------------------------------------------------
# the final answer span


def final_answer(text: str) -> tuple[str, bool] | None:
    """(span, delimited): the last <answer> block or \\boxed{} (delimited), else the end of the
    completion for math-verify to search (the last paragraph with a digit or math in it, cut to
    MAX_TAIL characters at a line or sentence boundary). None when there is nothing to read."""
    blocks = answer_blocks(text)
    if blocks:
        return blocks[-1].strip(), True
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip(), True
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if re.search(r"[\d$\\]", p)]
    if not paragraphs:
        return None
    tail = paragraphs[-1].strip()
    if len(tail) > MAX_TAIL:
        tail = _cut(tail)
    return (tail, False) if tail else None


def _cut(paragraph: str) -> str:
    """The shortest end of the paragraph within MAX_TAIL that starts at a line or sentence start
    outside $...$ math; "" if there is none."""
    start = len(paragraph) - MAX_TAIL
    for m in re.finditer(r"\n|(?<=[.!?])\s+", paragraph):
        if m.end() >= start and paragraph[:m.end()].replace(r"\$", "").count("$") % 2 == 0:
            return paragraph[m.end():].strip()
    return ""


_ANCHOR = re.compile(r"(?i)\b(?:final\s+answer|answer)\b")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n")
_TAGS = re.compile(r"</?[A-Za-z_]\w*>")


_REMAINDER = re.compile(r"(?i)\b(?:final\s+answer|answer)\b(?:\s+(?:is|would\s+be|will\s+be))?\s*[:=]?\s*"
                        r"(.+?)\s*(?:[.!?](?=\s|$)|\n|$)")


def _stated_answer(tail: str) -> str | None:
    """What follows the last "the answer is" up to the end of its sentence ("\\text{(C)}" in
    "The answer is \\text{(C)}."): LaTeX written without $...$, which math-verify does not look for."""
    found = list(_REMAINDER.finditer(tail))
    return found[-1].group(1) if found else None


def _answer_clause(tail: str) -> str:
    """What the hedging check reads in an undelimited tail: everything from the last "answer"
    on, else its last sentence."""
    anchors = list(_ANCHOR.finditer(tail))
    if anchors:
        return tail[anchors[-1].start():]
    sentences = [s for s in _SENTENCES.split(tail) if s.strip()]
    return sentences[-1] if sentences else tail


# ---------------------------------------------------------------------------------------------
# cheap refusals, before any parsing


def _group(s: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket group opening at s[i] (or len(s) if unbalanced)."""
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_:
            depth += 1
        elif s[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(s)


_OPERAND = re.compile(r"\\[A-Za-z]+|[-+]?[\w.]+")


def _exponent(s: str, i: int) -> tuple[str, int]:
    """The operand of a ^ ending at s[i:]: {...}, (...), a \\command, or a run of digits/letters."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] in "{(":
        end = _group(s, i, s[i], "}" if s[i] == "{" else ")")
        return s[i + 1:end - 1], end
    m = _OPERAND.match(s, i)
    return (m.group(), m.end()) if m else (s[i], i + 1)


_BASE_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*$")
_BIG_OPS = re.compile(r"\\(?:[dt]?binom|choose|Gamma|prod|sum)\b|\\operatorname")


def _pathological(s: str) -> bool:
    """True for inputs whose evaluation could take unbounded time: towers (9^{9^{9}}, 9**9**9),
    huge exponents (9^{999999}, (x+1)^{1000}), huge or nested factorials (100000!, (10!)!),
    big binomials/sums/products, very long digit strings."""
    if re.search(r"\d{%d,}" % (MAX_DIGITS + 1), s):
        return True
    s = s.replace("**", "^")
    for m in re.finditer(r"\^", s):
        exp, end = _exponent(s, m.end())
        if "^" in exp or "!" in exp or re.match(r"\s*\^", s[end:]):
            return True  # a tower: a^{b^c}, a^b^c, 2^{100!}
        if sum(c.isdigit() for c in exp) > 4:
            return True  # 2^{99999}, 9^{999*999}
        e = abs(int(exp)) if re.fullmatch(r"[-+]?\d+", exp.strip()) else None
        base = _BASE_NUMBER.search(s[:m.start()])
        if e is not None and base is not None and not re.search(r"[)}\]]\s*$", s[:m.start()]):
            if e * max(len(base.group(1).split(".")[0]), 1) > MAX_POW_DIGITS:
                return True
        elif e is not None and e > MAX_SYMBOLIC_EXPONENT:
            return True  # (x+1)^{1000}: sympy expands it
    for m in re.finditer(r"(?<!\\)!+(?!=)", s):
        before = s[:m.start()].rstrip()
        if before and before[-1] in ")}]":
            opener = {")": "(", "}": "{", "]": "["}[before[-1]]
            depth, j = 0, len(before) - 1
            while j >= 0:
                depth += (before[j] == before[-1]) - (before[j] == opener)
                if depth == 0:
                    break
                j -= 1
            inner = before[j + 1:-1]
            if "!" in inner or "^" in inner:
                return True  # (10!)!, (10^{6})!
            before = inner
        n = re.search(r"(\d+)\s*$", before)
        if n and (int(n.group(1)) > MAX_FACTORIAL or (len(m.group()) > 1 and int(n.group(1)) > 6)):
            return True  # 100000!, 20!! (if read as (20!)!)
    if _BIG_OPS.search(s) and any(int(d) >= 1000 for d in re.findall(r"\d+", s)):
        return True
    return False


_DISJUNCTION = re.compile(r"\\pm|\\mp|\\lor\b|\\vee\b|\\text\{\s*or\s*\}|\beither\b|"
                          r"[\d$}][^\n]{0,20}?\bor\b[^\n]{0,20}?[\d$]", re.I)
# an order or an approximation: "x \\geq 85", "x \\to 85", "x \\equiv 85" each cover more than one value
_RELATION = re.compile(r"<|>|\\[lg]eq{0,2}(?:slant)?\b|\\[lg]t\b|\\neq?\b|\\not|\\approx\b|\\sim\b|\\nless|\\ngtr|"
                       r"\\(?:succ|prec|gtr|less|eqslant|equiv|simeq|cong|propto|implies|iff|mapsto)|"
                       r"\\(?:long)?[Rr]ightarrow|\\to\b|"
                       r"\b(?:at\s+(?:least|most)|(?:more|less|fewer|greater|larger|smaller|bigger)\s+than|"
                       r"no\s+(?:more|less|fewer))\b", re.I)
_LIST = re.compile(r"[\d$}]\s*(?:[,;]|\band\b|&|\\text\{\s*and\s*\}|\\q?quad)\s*(?:-?\.?\d|\$|\\[dt]?frac|\\sqrt)",
                   re.I)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _hedged(answer: str, gold: str) -> bool:
    """Does the answer cover its bets where the gold is one plain value? Several values joined by
    or/and/commas ("85 or 86", "84, 85, 86"), \\pm, or the gold hidden in a relation ("x \\geq 85",
    "at least 85"). Connectors the gold itself uses are allowed (a gold tuple has commas)."""
    answer, gold = _TAGS.sub(" ", answer), _normalize(gold)
    if _DISJUNCTION.search(answer) and not _DISJUNCTION.search(gold) and not re.search(r"\bor\b", gold):
        return True
    if _RELATION.search(answer) and not _RELATION.search(gold):
        return True
    multi_gold = re.search(r"[,;]|\band\b|\\cup|\\{|\\\\", _THOUSANDS.sub("", gold))
    return not multi_gold and bool(_LIST.search(_THOUSANDS.sub("", answer)))


# ---------------------------------------------------------------------------------------------
# math-verify, with bounded time


class _OutOfTime(Exception):
    pass


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _Deadline:
    """Off the main thread: a per-thread profile hook that raises _OutOfTime once the time is up
    (math-verify's signal.alarm cannot work there). math-verify catches it and gives up on that
    parse/comparison; CPython then drops the hook, so `run` puts it back before every call."""

    def __init__(self, seconds: float):
        self.active = not _on_main_thread() and sys.getprofile() is None
        self.end = end = time.monotonic() + seconds

        def hook(frame, event, arg, clock=time.monotonic):  # called on every call: keep it lean
            if clock() > end:
                raise _OutOfTime

        self._hook = hook

    def expired(self) -> bool:
        return time.monotonic() > self.end

    def run(self, fn, *args, **kwargs):
        if self.expired():
            raise _OutOfTime
        if not self.active:
            return fn(*args, **kwargs)
        sys.setprofile(self._hook)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.setprofile(None)
        # a hook that fired has unset itself; an _OutOfTime math-verify did not catch propagates


@contextmanager
def _bounded():
    deadline = _Deadline(TIME_LIMIT)
    try:
        yield deadline
    except _OutOfTime:
        pass


def _timeouts() -> dict:
    """math-verify's own timeouts (signal.alarm) on the main thread; off it they cannot work and are
    turned off (the _Deadline hook bounds the time instead)."""
    return {} if _on_main_thread() else {"parsing_timeout": None}


def _configs():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(), ExprExtractionConfig()]


def _parse(text: str, deadline: _Deadline) -> list:
    from math_verify import parse

    return deadline.run(parse, text, extraction_config=_configs(), **_timeouts())


def _parse_span(span: str, deadline: _Deadline) -> list:
    """A delimited answer (or a gold) read as one LaTeX expression, else as plain text."""
    inner = span.replace(r"\$", "").replace("$", "").replace("\n", " ").strip()
    return _parse(f"${inner}$", deadline) or _parse(inner, deadline)


_GOLD: dict[str, tuple] = {}  # golds repeat (a GRPO group shares one): parsed once


def _parse_gold(gold: str, deadline: _Deadline) -> list:
    hit = _GOLD.get(gold)
    if hit is not None:
        return list(hit)
    parsed = _parse_span(gold, deadline)
    if not deadline.expired():  # a parse cut short is not remembered
        if len(_GOLD) >= 4096:
            _GOLD.clear()
        _GOLD[gold] = tuple(parsed)
    return parsed


def _verify(gold_parsed: list, pred_parsed: list, deadline: _Deadline) -> bool:
    from math_verify import verify

    kw = {} if _on_main_thread() else {"timeout_seconds": None}
    for g in gold_parsed:
        for p in pred_parsed:
            if deadline.run(verify, g, p, **kw):
                return True
            if deadline.expired():
                return False
    return False


# ---------------------------------------------------------------------------------------------


def is_equivalent(answer: str, gold: str, delimited: bool = True) -> bool:
    """Is `answer` (a delimited answer span, or with delimited=False the end of a completion for
    math-verify to search) mathematically equal to `gold`?"""
    answer, gold = _normalize(answer), _normalize(str(gold)).strip()
    if len(answer) > (MAX_SPAN if delimited else MAX_TAIL) or len(gold) > MAX_TAIL:
        return False
    if _pathological(answer) or _pathological(gold):
        return False
    if _hedged(answer if delimited else _answer_clause(answer), gold):
        return False
    g = _plain_number(gold)
    if g is not None and delimited:
        a = _plain_number(answer)
        if a is not None:
            if a == g:
                return True
            if a.denominator == 1 and g.denominator == 1:
                return False  # two integers: nothing math-verify could add
    with _bounded() as deadline:
        gold_parsed = _parse_gold(gold, deadline)
        if delimited:
            pred_parsed = _parse_span(answer, deadline)
            if not gold_parsed or not pred_parsed:
                return not deadline.expired() and answer.strip() == gold
            return _verify(gold_parsed, pred_parsed, deadline)
        # one answer a completion, chosen without looking at the gold: what follows the last "the answer is"
        # (read as one expression: LaTeX written without $...$, which math-verify does not look for), else
        # what math-verify finds at the end. Trying both against the gold paid "The answer is 86. $85$"
        # for 85 and for 86 alike.
        stated = _stated_answer(answer)
        if stated and len(stated) <= MAX_SPAN and "$" not in stated:
            stated_parsed = _parse_span(stated, deadline)
            if stated_parsed:
                return _verify(gold_parsed, stated_parsed, deadline)
        return _verify(gold_parsed, _parse(answer, deadline), deadline)
    return False  # out of time


def math_accuracy(completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 if the final answer equals the gold `answer` column (math-verify), else 0.0; None without gold.

    The final answer is the last <answer> block, else the last \\boxed{}, else the stated one or what
    math-verify finds at the end of the completion ("the answer is $\\frac{10}{9}$"). Equivalent forms
    count: 0.5 = 1/2 = \\frac{1}{2}, 408 = 408.0, 1,000 = 1 000 = 1000, −5 = -5, (1, +\\infty), f(y) = y.
    Hedged answers ("85 or 86", "x \\geq 85") and pathological ones (9^{9^{9}}) score 0.0. None for rows
    whose gold answer is missing or empty (e.g. countdown rows in a mixed dataset)."""
    golds = answer if answer is not None else [None] * len(completions)
    out: list[float | None] = []
    for completion, gold in zip(completions, golds):
        if gold is None or str(gold).strip() == "":
            out.append(None)
            continue
        found = final_answer(completion_text(completion))
        out.append(1.0 if found is not None and is_equivalent(found[0], str(gold), found[1]) else 0.0)
    return out
