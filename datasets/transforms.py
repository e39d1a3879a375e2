"""Turn a hub dataset's own columns into the ones a stage reads: named formatters and column maps.

Hub datasets rarely come in ladder's layout. GSM8K has `question` and `answer` = "worked steps #### 72",
where math_accuracy's gold must be "72"; MBPP has `text` and `test_list`, where code_accuracy reads a
`tests` column of asserts and the model must see the tests to know the function's name. A transform
is applied by `load_split` right after loading and before the columns are checked:

    "gsm8k"                       built-in formatter (FORMATTERS below)
    {"prompt": "question", ...}   a column map: new column <- existing column (copied, then others kept)
    "my_data.py:to_rl"            your own `fn(row: dict, kind: str) -> dict`, as a file or module path
    "none"                        use the columns as they are

With no transform given, a known hub id (KNOWN: openai/gsm8k, HuggingFaceH4/MATH-500,
google-research-datasets/mbpp, ...) gets its built-in formatter, so a recipe only names the dataset:

    data: openai/gsm8k
    data_name: main

Formatters build the row for a kind of data: `rl` (a chat `prompt` plus gold columns: `answer` for
math_accuracy, `tests` for code_accuracy) and `sft` (`messages`: the question, then the dataset's
reference solution ending in the same final-answer form the RL prompt asks for).
"""

from __future__ import annotations

import re

from ladder.errors import LadderError

# Final-answer conventions the rewards read (math_accuracy: <answer>, else \boxed{}, else the last number).
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_INSTRUCTION = "Write the Python function in a ```python code block."

CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 48/2 = <<48/2=24>>24


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _chat(question: str, solution: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]


def gsm8k_answer(text: str) -> str:
    """The gold number of a GSM8K answer ("steps #### 1,200" -> "1200")."""
    if "####" not in str(text):
        raise LadderError(f"gsm8k: answer has no '#### <number>' ending: {str(text)[-80:]!r}")
    return str(text).rsplit("####", 1)[1].strip().replace(",", "")


def gsm8k(row: dict, kind: str) -> dict:
    """openai/gsm8k (`question`, `answer` = "steps #### 72") -> `prompt`/`messages` + `answer` "72"."""
    gold = gsm8k_answer(row["answer"])
    question = f"{row['question'].strip()}\n\n{MATH_INSTRUCTION}"
    if kind == "sft":
        steps = CALCULATOR.sub("", str(row["answer"]).rsplit("####", 1)[0]).strip()
        return {"messages": _chat(question, f"{steps}\n\nThe final answer is $\\boxed{{{gold}}}$."), "answer": gold}
    return {"prompt": _user(question), "answer": gold}


def math_problems(row: dict, kind: str) -> dict:
    """MATH-style (`problem`, `solution`, optional `answer`; HuggingFaceH4/MATH-500, hendrycks MATH):
    the gold answer is the `answer` column, else the solution's last \\boxed{}."""
    from ladder.rewards.text import last_boxed

    gold = row.get("answer")
    if gold is None or str(gold).strip() == "":
        gold = last_boxed(str(row.get("solution", "")))
    if gold is None:
        raise LadderError(f"math: no `answer` column and no \\boxed{{}} in the solution: "
                          f"{str(row.get('solution', ''))[-80:]!r}")
    question = f"{row['problem'].strip()}\n\n{MATH_INSTRUCTION}"
    if kind == "sft":
        return {"messages": _chat(question, str(row["solution"]).strip()), "answer": str(gold).strip()}
    return {"prompt": _user(question), "answer": str(gold).strip()}


def mbpp_tests(row: dict) -> str:
    """MBPP's tests as one Python source: imports (sanitized config), setup code (full config), asserts."""
    lines = [*(row.get("test_imports") or []), row.get("test_setup_code") or "", *row["test_list"]]
    return "\n".join(line for line in lines if line and line.strip())


def mbpp(row: dict, kind: str) -> dict:
    """google-research-datasets/mbpp, config full (`text`) or sanitized (`prompt`), with `test_list` and
    `code` -> a prompt that shows the tests (the standard MBPP prompt: they name the function) and a
    `tests` column of asserts for code_accuracy."""
    task = (row.get("text") or row.get("prompt") or "").strip()
    question = (f"{task}\nYour code should pass these tests:\n\n" + "\n".join(row["test_list"]) +
                f"\n\n{CODE_INSTRUCTION}")
    tests = mbpp_tests(row)
    if kind == "sft":
        return {"messages": _chat(question, f"```python\n{row['code'].strip()}\n```"), "tests": tests}
    return {"prompt": _user(question), "tests": tests}


FORMATTERS = {"gsm8k": gsm8k, "math": math_problems, "mbpp": mbpp}
KINDS = ("rl", "sft")  # the kinds of data the built-in formatters can make

# Hub ids (lower case) whose built-in formatter applies when no transform is given.
KNOWN = {
    "openai/gsm8k": "gsm8k", "gsm8k": "gsm8k",
    "huggingfaceh4/math-500": "math", "digitallearninggmbh/math-lighteval": "math",
    "eleutherai/hendrycks_math": "math", "nlile/hendrycks-math-benchmark": "math",
    "google-research-datasets/mbpp": "mbpp", "mbpp": "mbpp",
}


def default_for(source: str) -> str | None:
    """The built-in formatter for a known hub id, else None."""
    return KNOWN.get(str(source).strip().lower())


def load_function(spec: str):
    """`fn(row, kind) -> dict` from `path/file.py:fn` or `package.module:fn`."""
    import importlib
    import importlib.util
    from pathlib import Path

    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise LadderError(f"transform '{spec}': file {where} not found")
            module_spec = importlib.util.spec_from_file_location(f"ladder_transform_{Path(where).stem}", where)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except LadderError:
        raise
    except Exception as e:
        raise LadderError(f"transform '{spec}': cannot import {where} ({type(e).__name__}: {e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LadderError(f"transform '{spec}': no function '{name}' in {where}")
    return fn


def row_function(spec, kind: str):
    """The per-row function a transform spec stands for, or None for "none"."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return None
    if isinstance(spec, dict):
        mapping = {str(k): str(v) for k, v in spec.items()}

        def remap(row: dict, kind: str) -> dict:
            return {new: row[old] for new, old in mapping.items()}

        remap.columns = mapping  # checked against the dataset before mapping
        return remap
    spec = str(spec).strip()
    if spec in FORMATTERS:
        if kind not in KINDS:
            raise LadderError(f"transform '{spec}' makes {' and '.join(KINDS)} data, not {kind}")
        return FORMATTERS[spec]
    if ":" in spec:
        return load_function(spec)
    raise LadderError(f"unknown transform '{spec}' (built-ins: {', '.join(sorted(FORMATTERS))}; or a column map "
                      "{new: old}, 'file.py:fn', 'module:fn', 'none')")


def apply(ds, spec, kind: str, where: str = "data"):
    """`ds` (a datasets.Dataset) through the transform `spec`: formatter/function output columns are
    added (replacing same-named ones), the dataset's other columns are kept for rewards to read."""
    fn = row_function(spec, kind)
    if fn is None:
        return ds
    missing = [old for old in getattr(fn, "columns", {}).values() if old not in ds.column_names]
    if missing:
        raise LadderError(f"{where}: column map reads '{missing[0]}', which is not a column "
                          f"(columns: {', '.join(ds.column_names)})")
    name = spec if isinstance(spec, str) else "column map"

    def one(row):
        try:
            return fn(dict(row), kind)
        except LadderError:
            raise
        except KeyError as e:
            raise LadderError(f"{where}: transform '{name}' needs column {e} "
                              f"(columns: {', '.join(ds.column_names)})") from None

    # Columns a formatter writes replace the originals (GSM8K's `answer` becomes the gold number).
    sample = one(ds[0]) if len(ds) else {}
    drop = [c for c in sample if c in ds.column_names]
    return ds.map(one, remove_columns=drop, desc=f"transform {name}")
