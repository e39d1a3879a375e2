"""Tools a model may call during RL rollouts: a built-in exact calculator and Python sandbox, and the
loading and checking of custom ones named in a recipe.

TRL's GRPOTrainer(tools=[...]) shows each tool to the model as the JSON schema that transformers makes
from its name, type hints and Google-style docstring (get_json_schema), calls it as `fn(**arguments)`
with whatever arguments the model wrote, and shows the model `str(result)` (an exception becomes
{"error": str(e)}). A recipe names tools as it names rewards, with the same loader
(ladder.rewards.plugins.load_function):

    tools:
      - calculator
      - python
      - my_tools.py:word_count
      - {name: my_tools:lookup, example: {key: "a"}}   # the arguments load_tools checks it with

What it defends against: the arguments come from a policy under optimisation, which will find any way
to make a tool hang, exhaust memory or run code. `calculator` never evaluates Python: it walks the
syntax tree of a short arithmetic expression in exact fractions, refusing names, calls, attributes and
strings, and refusing huge powers and huge numbers before computing them. `python` runs code only in
ladder's sandbox (ladder.rewards.sandbox: no host files, no network; time, memory and output limits),
never in this process. A broken tool (no schema, a sample call that raises or returns something odd,
two tools with one name) is a one-line LadderError from load_tools before training starts, not a
failure in the middle of a run.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import math
import operator
import typing
from fractions import Fraction
from typing import Callable, NoReturn

from ladder.errors import LadderError
from ladder.rewards.plugins import load_function
from ladder.rewards.sandbox import run_python

# ---------------------------------------------------------------------------------------------- calculator

MAX_EXPRESSION_CHARS = 200
MAX_DIGITS = 1000  # any number met on the way (literal, intermediate or result) longer than this is refused
MAX_BITS = int(MAX_DIGITS * math.log2(10))  # the same bound, checked on bit lengths (no str() of huge ints)
MAX_EXPONENT = 100
MAX_DEPTH = 100  # syntax-tree nesting: the walk below recurses once per level
_ALLOWED = "only numbers and + - * / // % ** ( ) are allowed"
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # ** is _power: it is bounded first
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOLS = {ast.BitXor: "^ (powers are **)", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~", ast.Not: "not"}


def _fail(message: str) -> NoReturn:
    raise ValueError(f"calculator: {message}") from None  # the message is the whole story, no chained traceback


def _bounded(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        _fail(f"a number in the computation has more than {MAX_DIGITS} digits")
    return value


def _describe(node: ast.AST) -> str:
    """What the model wrote that is not arithmetic, in a few words it can act on."""
    if isinstance(node, ast.Name):
        return f"Name '{node.id}'"
    if isinstance(node, ast.Attribute):
        return f"Attribute '.{node.attr}'"
    if isinstance(node, ast.Call):
        return f"Call {ast.unparse(node.func)[:40]}(...)"
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"operator {_SYMBOLS.get(type(node.op), type(node.op).__name__)}"
    return type(node).__name__  # Call, Lambda, ListComp, Compare, ...


def _number(node: ast.Constant, source: str) -> Fraction:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # bool is an int; complex, str, None
        _fail(f"{_ALLOWED}, got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        return _bounded(Fraction(value))
    # A float literal means its decimal text (0.1 is 1/10, not the binary double nearest to it). Its
    # exponent is checked first: Fraction("1e-999999999") would build a billion-digit power of ten.
    text = (ast.get_source_segment(source, node) or repr(value)).replace("_", "")
    exponent = text.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > MAX_DIGITS:
        _fail(f"a number in the computation has more than {MAX_DIGITS} digits")
    return _bounded(Fraction(text))


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        _fail(f"** needs a whole-number exponent (roots are not exact), got {_format(exponent)}")
    n = exponent.numerator
    if abs(n) > MAX_EXPONENT:
        _fail(f"exponent {n} is too large (at most {MAX_EXPONENT} either way)")
    # the result's size is known before computing it: (2 ** 100) ** 100 is refused, not computed
    if (max(base.numerator.bit_length(), base.denominator.bit_length()) - 1) * abs(n) > MAX_BITS:
        _fail(f"a number in the computation has more than {MAX_DIGITS} digits")
    return _bounded(base ** n)


def _evaluate(node: ast.AST, source: str, depth: int) -> Fraction:
    if depth > MAX_DEPTH:
        _fail("the expression is nested too deeply")
    if isinstance(node, ast.Constant):
        return _number(node, source)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, source, depth + 1))
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Pow)):
        left = _evaluate(node.left, source, depth + 1)
        right = _evaluate(node.right, source, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        return _bounded(Fraction(_BINARY[type(node.op)](left, right)))  # // gives an int: back to Fraction
    _fail(f"{_ALLOWED}, got {_describe(node)}")


def _format(value: Fraction) -> str:
    """An integer when whole, a decimal when it terminates (denominator 2^a 5^b) within MAX_DIGITS places, else
    p/q: all exact. (0.5**33)**100 would have been 3,300 decimal places from 14 characters of input: more than
    any number the calculator accepts, and a flood of the model's context (the python tool cuts at 2,000)."""
    num, den = value.numerator, value.denominator
    if den == 1:
        return str(num)
    rest, twos, fives = den, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    if rest != 1 or places > MAX_DIGITS:
        return f"{num}/{den}"
    whole, fraction = divmod(abs(num) * 10**places // den, 10**places)  # exact: den divides 10**places
    return f"{'-' if num < 0 else ''}{whole}.{fraction:0{places}d}"


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly (fractions, no rounding) and return the result.

    Allowed: numbers (integers and decimals), + - * / // % ** and parentheses; nothing else (no names,
    functions or variables). The result is an integer ("1786"), a decimal that ends ("3.5") or a
    fraction ("7/3"). At most 200 characters, powers up to 100, numbers up to 1000 digits.

    Args:
        expression: the arithmetic to evaluate, e.g. "47 * 38" or "(1/3 + 2) ** 2"
    """
    if not isinstance(expression, str):
        _fail(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        _fail(f"the expression is {len(expression)} characters long (at most {MAX_EXPRESSION_CHARS})")
    source = expression.strip()  # a leading space would be an IndentationError
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes on some Pythons
        _fail(f"not an arithmetic expression ({getattr(e, 'msg', None) or e})")
    except (RecursionError, MemoryError):  # the parser's own nesting limit
        _fail("the expression is nested too deeply")
    try:
        return _format(_evaluate(tree.body, source, 0))
    except ZeroDivisionError:
        _fail("division by zero")
    except RecursionError:  # MAX_DEPTH is far below Python's limit; this only guards a caller already deep
        _fail("the expression is nested too deeply")


# -------------------------------------------------------------------------------------------------- python

# Keep these in step with python's docstring (the model reads that, not the constants).
PYTHON_TIMEOUT_S = 5.0
PYTHON_MEMORY_MB = 512  # what code_accuracy gives a program: numpy and sympy import within it
MAX_OUTPUT_CHARS = 2000  # what the model is shown; more would crowd its context window
CUT_MARKER = f"\n... (output cut at {MAX_OUTPUT_CHARS} characters)"


def _output(result) -> str:
    """A SandboxResult as the model should read it: stdout, then stderr (its error) and why it stopped."""
    # the sandbox stops a program once it has printed max_output bytes, and says so only in `reason`
    cut = result.reason.startswith("output over")
    notes = [result.stderr.strip()] if result.stderr.strip() else []
    if result.timed_out:
        notes.append(f"timed out after {PYTHON_TIMEOUT_S:g} seconds")
    elif not result.ok and not notes and not cut:
        notes.append(f"({result.reason})")
    err, out = "\n".join(notes), result.stdout
    if cut or len(out) + len(err) > MAX_OUTPUT_CHARS:
        err = err[-(MAX_OUTPUT_CHARS // 4):]  # keep the error's last lines: they say what went wrong
        out = out[: MAX_OUTPUT_CHARS - len(err)].rstrip("\n")
        out = out + CUT_MARKER if out else CUT_MARKER.lstrip("\n")
    text = (out.rstrip("\n") + "\n" + err if out.strip() and err else out + err).rstrip()
    return text or "(no output: print() the values you want to see)"


def python(code: str) -> str:
    """Run a Python program and return what it printed.

    The program runs in a fresh, isolated Python 3 (standard library and installed packages; no network,
    no files; at most 5 seconds and 512 MB). Only printed output comes back, so print() every value you
    want to see; an error comes back as its message. Output beyond 2000 characters is cut.

    Args:
        code: the complete Python program to run, e.g. "print(sum(range(10)))"
    """
    if not isinstance(code, str):
        raise ValueError(f"python: the code must be a string, got {type(code).__name__}")
    # No jail here is a LadderError from run_python, and it is let through: a setup problem, not model output.
    # max_output is in bytes: 4 per character covers any UTF-8, so a cut by the sandbox is a cut here too.
    result = run_python(code, timeout=PYTHON_TIMEOUT_S, memory_mb=PYTHON_MEMORY_MB,
                        max_output=4 * MAX_OUTPUT_CHARS + 4)
    return _output(result)


TOOLS: dict[str, Callable] = {"calculator": calculator, "python": python}

# ---------------------------------------------------------------------------------- loading and checking

# Each built-in's sample call and the exact text it must give: `python` failing it means a broken sandbox.
BUILTIN_SAMPLES = {"calculator": ({"expression": "2 + 3"}, "5"), "python": ({"code": "print(1 + 1)"}, "2")}
# What a custom tool's sample call passes for a required argument of each type, when the recipe gives no example.
MADE_UP = {str: "1", int: 1, float: 1.0, bool: True}


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else ""


def _entries(specs) -> list[tuple[str, dict | None]]:
    """Recipe `tools:` (names, or {name, example} entries) -> [(spec, example or None)]."""
    if specs is None:
        return []
    if isinstance(specs, (str, dict)):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise LadderError(f"tools: expected a list of tool names or {{name, example}} entries, got {_short(specs)}")
    entries = []
    for item in specs:
        if not isinstance(item, dict):
            entries.append((str(item).strip(), None))
            continue
        if "name" not in item or set(item) - {"name", "example"}:
            raise LadderError(f"tools entry {_short(item)}: expected {{name: ..., example: {{argument: value}}}}")
        example = item.get("example")
        if example is not None and not isinstance(example, dict):
            raise LadderError(f"tool '{item['name']}': example must be a mapping of argument: value, "
                              f"got {_short(example)}")
        entries.append((str(item["name"]).strip(), example))
    return entries


def _schema(fn: Callable, spec: str) -> dict:
    """What the model is shown; a function transformers cannot describe is refused here, not by TRL later."""
    from transformers.utils import get_json_schema  # transformers takes seconds to import: only when used

    try:
        return get_json_schema(fn)
    except Exception as e:
        raise LadderError(f"tool '{spec}': cannot describe it to the model: {_first_line(e)} (a tool needs a type "
                          "hint on every argument and a Google-style docstring with an Args: line for each)") from None


def _made_up_arguments(fn: Callable, spec: str) -> dict:
    """Arguments for a sample call, one per required parameter, from its type hint (MADE_UP)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an odd callable: every argument below then asks for an example
        hints = {}
    arguments = {}
    for p in inspect.signature(fn).parameters.values():
        if p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name)
        if hint not in MADE_UP:
            raise LadderError(f"tool '{spec}': no sample value for argument '{p.name}' "
                              f"({inspect.formatannotation(hint)}); give one in the recipe: "
                              f"{{name: {spec}, example: {{{p.name}: ...}}}}")
        arguments[p.name] = MADE_UP[hint]
    return arguments


SAMPLE_SECONDS = 30.0  # the sample call's limit: the python built-in takes under a second


def _within(seconds: float, fn: Callable, arguments: dict):
    """fn(**arguments) (awaited if a coroutine, as TRL does) in a daemon thread: its result or its exception,
    or TimeoutError when it has not returned in time (the thread is left behind; it cannot be killed)."""
    import threading

    out: dict = {}

    def run():
        try:
            result = fn(**arguments)
            out["result"] = asyncio.run(result) if inspect.iscoroutine(result) else result
        except BaseException as e:  # handed to the caller, which reports it
            out["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError
    if "error" in out:
        raise out["error"]
    return out["result"]


def _sample_call(fn: Callable, spec: str, example: dict | None) -> None:
    """Call the tool once as TRL will (keywords only); it must not raise and must return str/int/float."""
    builtin = next((name for name, tool in TOOLS.items() if fn is tool), None)
    expected = None
    if example is not None:
        arguments = example
    elif builtin is not None:
        arguments, expected = BUILTIN_SAMPLES[builtin]
    else:
        arguments = _made_up_arguments(fn, spec)
    call = f"{fn.__name__}({', '.join(f'{k}={_short(v, 40)}' for k, v in arguments.items())})"
    try:
        result = _within(SAMPLE_SECONDS, fn, arguments)
    except TimeoutError:
        raise LadderError(f"tool '{spec}': sample call {call} did not return within {SAMPLE_SECONDS:g} s "
                          "(a tool that hangs stalls every rollout that calls it)") from None
    except LadderError as e:  # e.g. no sandbox on this machine: already says what to do
        raise LadderError(f"tool '{spec}': {e}") from None
    except Exception as e:
        first = _first_line(e)
        raise LadderError(f"tool '{spec}': sample call {call} raised {type(e).__name__}"
                          + (f": {first}" if first else "")) from None
    if not isinstance(result, (str, int, float)):
        raise LadderError(f"tool '{spec}': sample call {call} returned {type(result).__name__} {_short(result)}; "
                          "a tool returns a str, int or float (the model is shown its str())")
    if expected is not None and str(result) != expected:
        raise LadderError(f"tool '{spec}': sample call {call} returned {_short(result)} instead of {expected!r}")


def custom_tool_specs(specs) -> list[str]:
    """The entries of a `tools:` list that are not built-in: code from a module or file, which loading runs."""
    return [spec for spec, _ in _entries(specs) if spec not in TOOLS]


def load_tools(specs) -> list[Callable]:
    """Recipe `tools:` -> the functions, each checked: it has a schema, a sample call works, names are unique.

    Each spec is a built-in name (TOOLS), `module:function` or `path/file.py:function`, or a dict
    {name: <one of those>, example: {argument: value}} giving the sample call's arguments. Custom
    functions come back as loaded: the model calls a tool by its __name__, which must not change."""
    tools, names = [], {}
    for spec, example in _entries(specs):
        fn = load_function(spec, kind="tool", builtins=TOOLS)
        name = _schema(fn, spec)["function"]["name"]
        if name in names:
            raise LadderError(f"tool '{spec}': another tool ('{names[name]}') is also named '{name}'; "
                              "the model calls tools by name")
        names[name] = spec
        _sample_call(fn, spec, example)
        tools.append(fn)
    return tools


def tool_schemas(tools) -> str:
    """The tools as the model sees them, as JSON: a dataset's `tools` column."""
    from transformers.utils import get_json_schema

    return json.dumps([get_json_schema(fn) for fn in tools])


def tool_names(tools) -> list[str]:
    return [fn.__name__ for fn in tools]
