"""Tools for RL rollouts: the calculator is exact and refuses every abuse quickly, the python tool runs
only in the sandbox and reports errors as text, and load_tools refuses a broken tool in one line."""

import builtins
import json
import os
import sys
import textwrap
import time

import pytest

from ladder import tools
from ladder.errors import LadderError
from ladder.rewards import sandbox
from ladder.rewards.plugins import load_function
from ladder.tools import TOOLS, calculator, load_tools, python, tool_names, tool_schemas

JAILS = [kind for kind in ("bwrap", "setuid") if sandbox.probe(kind) is None]
needs_jail = pytest.mark.skipif(not JAILS, reason="no sandbox jail works here (install bubblewrap)")

WORD_COUNT = '''\
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: the text to count
    """
    return len(text.split())
'''


# ---------------------------------------------------------------------------------------------- calculator

@pytest.mark.parametrize("expression, result", [
    ("47 * 38", "1786"), ("7 / 2", "3.5"), ("1/3 + 1/3", "2/3"), ("(2 + 3) * -4", "-20"), ("0.1 + 0.2", "0.3"),
    ("2 ** 10", "1024"), ("-7 / 2", "-3.5"), ("2 ** -3", "0.125"), ("7 // 2", "3"), ("-7 % 3", "2"),
    ("1 / 3 * 3", "1"), ("1.5e3 + 1_000", "2500"), ("  6 * 7  ", "42"), ("(1/3 + 2) ** 2", "49/9"),
])
def test_calculator_is_exact(expression, result):
    assert calculator(expression) == result


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('ls')", "allowed, got Call __import__('os').system(...)"),
    ("x", "allowed, got Name 'x'"),
    ('"a" * 3', "allowed, got str 'a'"),
    ("9 ** 9 ** 9", "exponent 387420489 is too large"),
    ("10 ** 100000", "exponent 100000 is too large"),
    ("(2 ** 100) ** 100", "more than 1000 digits"),  # refused from the sizes, before computing it
    ("10 ** 100 * 10 ** 100 * " * 5 + "1", "more than 1000 digits"),
    ("1e-999999999", "more than 1000 digits"),  # not a billion-digit power of ten in Fraction()
    ("1" * 300, "300 characters long (at most 200)"),
    ("1 / 0", "division by zero"), ("5 % 0", "division by zero"), ("0 ** -1", "division by zero"),
    ("(" * 500 + "1" + ")" * 500, "characters long"),
    ("-" * 199 + "1", "nested too deeply"),
    ("True + 1", "allowed, got bool True"),
    ("1j", "allowed, got complex 1j"),
    ("lambda: 1", "allowed, got Lambda"),
    ("[i for i in range(9)]", "allowed, got ListComp"),
    ("(1).real", "allowed, got Attribute '.real'"),
    ("2 ^ 3", "got operator ^ (powers are **)"),
    ("2 ** 0.5", "whole-number exponent"),
    ("1 < 2", "allowed, got Compare"),
    ("", "not an arithmetic expression"), ("2 +", "not an arithmetic expression"),
])
def test_calculator_refuses_abuse_quickly_and_clearly(expression, message):
    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        calculator(expression)
    assert time.monotonic() - start < 1
    text = str(e.value)
    assert text.startswith("calculator: ") and message in text and "\n" not in text and len(text) < 200


def test_calculator_nesting_within_the_limits_works_and_the_parser_limits_are_valueerrors(monkeypatch):
    assert calculator("(" * 99 + "1" + ")" * 99) == "1"
    assert calculator("+".join(["1"] * 100)) == "100"  # the longest sum that fits is not "too deep"
    monkeypatch.setattr(tools, "MAX_EXPRESSION_CHARS", 100_000)
    monkeypatch.setattr(tools, "MAX_DEPTH", 10**6)
    # past the length and depth bounds, Python's parser itself fails: still a ValueError, not RecursionError
    with pytest.raises(ValueError, match="nested too deeply"):
        calculator("-" * 5000 + "1")
    with pytest.raises(ValueError, match="not an arithmetic expression"):
        calculator("(" * 500 + "1" + ")" * 500)


def test_a_result_whose_decimal_would_run_past_the_digit_limit_is_a_fraction():
    """2^-3300 ends as a decimal, but after 3,300 places: from 14 characters a flood of the model's context."""
    from fractions import Fraction

    result = calculator("(0.5**33)**100")
    assert result == f"1/{2**3300}" and len(result) < 1000 and Fraction(result) == Fraction(1, 2**3300)
    assert calculator("0.5**10") == "0.0009765625"  # short decimals stay decimals


def test_calculator_refuses_a_non_string():
    with pytest.raises(ValueError, match="must be a string, got int"):
        calculator(5)


# -------------------------------------------------------------------------------------------------- python

@needs_jail
def test_python_returns_what_it_printed():
    assert python("print(6 * 7)\nprint('done')") == "42\ndone"
    assert python("import sys\nprint(1)\nsys.stderr.write('careful\\n')") == "1\ncareful"
    assert "no output" in python("x = 1")


@needs_jail
def test_python_errors_are_returned_as_text_not_raised():
    out = python("print('before')\nraise KeyError('missing')")
    assert out.startswith("before\n") and "KeyError: 'missing'" in out
    assert "SyntaxError" in python("def f(:")


@needs_jail
def test_python_infinite_loop_times_out(monkeypatch):
    monkeypatch.setattr(tools, "PYTHON_TIMEOUT_S", 1.0)
    start = time.monotonic()
    out = python("print('working', flush=True)\nwhile True:\n    pass")
    assert time.monotonic() - start < 5
    assert out == "working\ntimed out after 1 seconds"  # what it printed (and flushed) before, then why it stopped


@needs_jail
def test_python_output_is_capped_with_a_marker():
    endless = python("i = 0\nwhile True:\n    print(i)\n    i += 1")  # stopped by the sandbox's output cap
    assert endless.endswith(tools.CUT_MARKER) and len(endless) <= tools.MAX_OUTPUT_CHARS + len(tools.CUT_MARKER)
    long = python("print('x' * 3000)")  # ends by itself, over the cap
    assert long == "x" * tools.MAX_OUTPUT_CHARS + tools.CUT_MARKER
    # the error after a flood of output is still shown: it is what the model needs
    flood = python("print('y' * 3000)\nraise ValueError('the real problem')")
    assert tools.CUT_MARKER in flood and flood.endswith("ValueError: the real problem")
    assert python("print('z' * 1999)") == "z" * 1999  # under the cap: untouched


@needs_jail
def test_python_cannot_read_host_files():
    out = python(f"print(open({__file__!r}).read())")
    assert "FileNotFoundError" in out and "the model cannot read this" not in out
    out = python("print(open('/etc/shadow').read())")
    assert "Error" in out and "root:" not in out


@needs_jail
def test_python_runs_in_the_sandbox_not_in_this_process():
    out = python("import builtins, os\nbuiltins.LADDER_TOOL_PROBE = 1\nprint(os.getpid(), os.path.exists('/proc/self'))")
    pid, proc = out.split()
    assert not hasattr(builtins, "LADDER_TOOL_PROBE")  # its globals are another process's
    assert int(pid) != os.getpid() and int(pid) < 10 and proc == "False"  # own PID namespace, no /proc


def test_python_without_a_jail_is_a_setup_error_not_model_output(monkeypatch):
    monkeypatch.setenv("LADDER_SANDBOX", "no-such-jail")
    with pytest.raises(LadderError, match="no working sandbox"):
        python("print(1)")
    with pytest.raises(LadderError) as e:
        load_tools(["python"])
    assert str(e.value).startswith("tool 'python': no working sandbox") and "\n" not in str(e.value)


def test_python_docstring_states_the_limits_it_runs_under():
    doc = python.__doc__
    assert f"{tools.PYTHON_TIMEOUT_S:g} seconds" in doc and f"{tools.PYTHON_MEMORY_MB} MB" in doc
    assert f"{tools.MAX_OUTPUT_CHARS} characters" in doc
    assert f"{tools.MAX_EXPRESSION_CHARS} characters" in calculator.__doc__


# ---------------------------------------------------------------------------------------------- load_tools

def _tool_file(tmp_path, source, name="my_tools.py"):
    f = tmp_path / name
    f.write_text(textwrap.dedent(source))
    return f


def _refused(specs) -> str:
    with pytest.raises(LadderError) as e:
        load_tools(specs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_builtins_load_and_nothing_is_nothing():
    assert load_tools(["calculator"]) == [calculator]
    assert load_tools([{"name": "calculator"}]) == [calculator]
    assert load_tools([]) == [] and load_tools(None) == []
    assert TOOLS == {"calculator": calculator, "python": python}


@needs_jail
def test_both_builtins_pass_their_sample_calls():
    assert load_tools(["calculator", "python"]) == [calculator, python]


def test_the_readme_custom_tool_loads_from_a_file(tmp_path):
    f = _tool_file(tmp_path, WORD_COUNT, "count.py")
    fns = load_tools([f"{f}:word_count"])
    assert tool_names(fns) == ["word_count"]  # the model calls it by this name
    assert fns[0](text="three little words") == 3


def test_custom_tool_from_a_module(tmp_path, monkeypatch):
    _tool_file(tmp_path, WORD_COUNT, "team_tools.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        fns = load_tools(["calculator", "team_tools:word_count"])
        assert tool_names(fns) == ["calculator", "word_count"]
        assert fns[1] is sys.modules["team_tools"].word_count  # as loaded, not wrapped
    finally:
        sys.modules.pop("team_tools", None)


def test_missing_docstring_or_type_hint_is_refused_naming_the_spec(tmp_path):
    f = _tool_file(tmp_path, """\
        def no_doc(text: str) -> str:
            return text

        def no_hint(text) -> str:
            '''Echo.

            Args:
                text: what to echo
            '''
            return text

        def no_arg_doc(text: str) -> str:
            '''Echo.'''
            return text
    """)
    message = _refused([f"{f}:no_doc"])
    assert message.startswith(f"tool '{f}:no_doc': cannot describe it to the model") and "no docstring" in message
    assert "missing a type hint" in _refused([f"{f}:no_hint"])
    assert "no description for the argument 'text'" in _refused([f"{f}:no_arg_doc"])


def test_a_sample_call_that_raises_or_returns_the_wrong_type_is_refused(tmp_path):
    f = _tool_file(tmp_path, """\
        def broken(n: int) -> float:
            '''Invert.

            Args:
                n: a number
            '''
            return 1 / (n - 1)

        def nothing(text: str) -> None:
            '''Forget to return.

            Args:
                text: anything
            '''

        def listing(text: str, times: int = 2) -> list:
            '''A list.

            Args:
                text: anything
                times: how many
            '''
            return [text] * times
    """)
    message = _refused([f"{f}:broken"])  # made-up n=1 divides by zero
    assert message.startswith(f"tool '{f}:broken': sample call broken(n=1) raised ZeroDivisionError: division by zero")
    assert "sample call nothing(text='1') returned NoneType None" in _refused([f"{f}:nothing"])
    assert "returned list ['1', '1']; a tool returns a str, int or float" in _refused([f"{f}:listing"])


def test_example_gives_the_sample_call_its_arguments(tmp_path):
    f = _tool_file(tmp_path, """\
        def lookup(key: str) -> str:
            '''Look a word up.

            Args:
                key: the word
            '''
            return {"a": "apple"}[key]

        def total(numbers: list[int]) -> int:
            '''Add numbers up.

            Args:
                numbers: the numbers
            '''
            return sum(numbers)
    """)
    assert "raised KeyError: '1'" in _refused([f"{f}:lookup"])  # the made-up "1" is no key
    assert tool_names(load_tools([{"name": f"{f}:lookup", "example": {"key": "a"}}])) == ["lookup"]
    message = _refused([f"{f}:total"])  # no made-up value for a list
    assert "no sample value for argument 'numbers' (list[int])" in message and "example: {numbers: ...}" in message
    assert load_tools([{"name": f"{f}:total", "example": {"numbers": [1, 2]}}])[0](numbers=[3, 4]) == 7
    assert "raised TypeError" in _refused([{"name": f"{f}:total", "example": {"nums": [1]}}])


def test_async_tools_are_awaited_for_their_sample_call(tmp_path):
    f = _tool_file(tmp_path, """\
        async def shout(text: str) -> str:
            '''Shout.

            Args:
                text: what to shout
            '''
            return text.upper() + "!"
    """)
    assert tool_names(load_tools([f"{f}:shout"])) == ["shout"]


def test_unknown_builtin_duplicate_names_and_bad_entries(tmp_path):
    assert "tool 'calculater': unknown built-in (built-ins: calculator, python;" in _refused(["calculater"])
    assert "another tool ('calculator') is also named 'calculator'" in _refused(["calculator", "calculator"])
    f = _tool_file(tmp_path, WORD_COUNT.replace("word_count", "calculator"))
    assert f"tool '{f}:calculator': another tool" in _refused(["calculator", f"{f}:calculator"])
    assert "expected {name: ..., example:" in _refused([{"nam": "calculator"}])
    assert "example must be a mapping" in _refused([{"name": "calculator", "example": "2 + 3"}])
    assert "expected a list of tool names" in _refused(42)
    assert f"tool '{tmp_path}/nope.py:f': file" in _refused([f"{tmp_path}/nope.py:f"])


def test_a_builtin_giving_the_wrong_sample_answer_is_refused(monkeypatch):
    monkeypatch.setitem(tools.BUILTIN_SAMPLES, "calculator", ({"expression": "2 + 3"}, "6"))
    assert "returned '5' instead of '6'" in _refused(["calculator"])


def test_rewards_and_tools_share_the_loader(tmp_path):
    f = _tool_file(tmp_path, WORD_COUNT)
    assert load_function(f"{f}:word_count", kind="tool", builtins={})(text="a b") == 2
    with pytest.raises(LadderError, match=r"^reward 'x': unknown built-in \(built-ins: y;"):
        load_function("x", kind="reward", builtins={"y": len})


# ------------------------------------------------------------------------------------------------ schemas

def test_tool_schemas_round_trip_and_name_each_tool(tmp_path):
    f = _tool_file(tmp_path, WORD_COUNT)
    fns = [calculator, *load_tools([f"{f}:word_count"])]
    schemas = json.loads(tool_schemas(fns))
    assert [s["function"]["name"] for s in schemas] == ["calculator", "word_count"] == tool_names(fns)
    assert schemas[1]["function"]["parameters"]["properties"]["text"] == {"type": "string",
                                                                         "description": "the text to count"}
    assert schemas[0]["function"]["parameters"]["required"] == ["expression"]
    assert json.loads(tool_schemas([])) == []


def test_a_sample_call_that_hangs_is_refused_in_time(tmp_path, monkeypatch):
    import time

    from ladder import tools

    f = _tool_file(tmp_path, """\
        import time

        def stuck(text: str) -> str:
            '''Never answers.

            Args:
                text: anything
            '''
            time.sleep(60)
            return text
    """)
    monkeypatch.setattr(tools, "SAMPLE_SECONDS", 0.5)
    start = time.monotonic()
    message = _refused([f"{f}:stuck"])
    assert time.monotonic() - start < 5
    assert message == f"tool '{f}:stuck': sample call stuck(text='1') did not return within 0.5 s " \
                      "(a tool that hangs stalls every rollout that calls it)"
