"""Loading reward functions named in a recipe, and checking them before any training starts.

A recipe lists rewards as built-in names, `package.module:function` or `path/to/file.py:function`,
each with an optional weight and optional settings (`args`: values for the function's keyword-only
parameters, bound once when the recipe is loaded):

    rewards:
      - math_accuracy                            # weight 1.0
      - {name: format_reward, weight: 0.2}
      - {name: my_rewards.py:brevity, weight: 0.1}
      - {name: abstention_reward, args: {right: 1.0, abstain: 0.3, wrong: 0.0}}

The loader itself (load_function) is shared with the tools a model may call in RL rollouts (ladder.tools).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math as _math
import numbers
from pathlib import Path

from ladder.errors import LadderError


def _builtins() -> dict:
    from ladder.rewards import REWARDS

    return REWARDS


def load_reward(spec: str, kind: str = "reward"):
    """A reward function from a built-in name, `module:function` or `file.py:function` (`kind` names it in
    errors: an eval-only `judge` is loaded the same way)."""
    return load_function(spec, kind=kind, builtins=_builtins())


def load_function(spec: str, *, kind: str, builtins: dict):
    """A function from a built-in name (a key of `builtins`), `module:function` or `file.py:function`.

    Shared by rewards and tools (ladder.tools): every failure is one LadderError line starting with
    `{kind} '{spec}':`, so the user sees which recipe entry is wrong."""
    spec = str(spec).strip()
    if ":" not in spec:
        if spec not in builtins:
            raise LadderError(f"{kind} '{spec}': unknown built-in (built-ins: {', '.join(sorted(builtins))}; "
                              "custom ones are 'module:function' or 'path/file.py:function')")
        return builtins[spec]
    where, _, name = spec.rpartition(":")
    if not where or not name or where.startswith("."):
        raise LadderError(f"{kind} '{spec}': expected 'module:function' or 'path/file.py:function'")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise LadderError(f"{kind} '{spec}': file {path} not found")
        # a name of its own per file: two files both called my_rewards.py must not share a module
        module_name = f"ladder_{kind}_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:  # a sys.exit() at import would end the run without a word
            raise LadderError(f"{kind} '{spec}': importing {path} failed ({_first_line(e)})") from None
    else:
        try:
            module = importlib.import_module(where)
        except (Exception, SystemExit) as e:  # not only ImportError: a module's own code may raise anything
            raise LadderError(f"{kind} '{spec}': cannot import module '{where}' ({_first_line(e)})") from None
    try:
        fn = getattr(module, name, None)
    except Exception as e:  # a module __getattr__ that raises
        raise LadderError(f"{kind} '{spec}': reading '{name}' from {where} failed ({_first_line(e)})") from None
    if fn is None:
        raise LadderError(f"{kind} '{spec}': no function '{name}' in {where}")
    if not callable(fn):
        raise LadderError(f"{kind} '{spec}': '{name}' is not callable")
    return fn


def _first_line(e: BaseException) -> str:
    """An exception as one short line: the error stays one line whatever the module raised."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _named(fn, spec: str):
    """Keep a readable __name__ (TRL logs each reward under it) without touching the original; custom
    rewards also remember their spec, so errors can name the file or module they came from."""
    if getattr(fn, "__name__", None) and ":" not in spec:
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper.__name__ = getattr(fn, "__name__", None) or spec.rpartition(":")[2] or spec
    wrapper.__ladder_spec__ = spec
    return wrapper


def settings(fn) -> list[str]:
    """A reward's settings: its keyword-only parameters (`*, right=1.0, ...`). Only those can be bound
    from a recipe's `args`: the others are the completions and the dataset columns TRL passes."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY]


def with_args(fn, spec: str, args) -> object:
    """fn with its settings bound from a recipe entry's `args`; an unknown name is one line naming the reward."""
    if not isinstance(args, dict):
        raise LadderError(f"reward '{spec}': args must be a mapping of setting: value, got {args!r}")
    known = settings(fn)
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise LadderError(f"reward '{spec}': unknown arg '{unknown[0]}' (its settings: "
                          f"{', '.join(known) if known else 'none'})")
    bound = functools.partial(fn, **args)
    functools.update_wrapper(bound, fn)  # __name__ for TRL's logs; __wrapped__ for required_columns
    return bound


def load_rewards(specs) -> tuple[list, list[float]]:
    """Recipe `rewards:` (a list of names / {name, weight, args} dicts, or a {name: weight} dict)
    -> (functions, weights)."""
    if isinstance(specs, (str, dict)) and not (isinstance(specs, dict) and "name" in specs):
        specs = [{"name": k, "weight": v} for k, v in specs.items()] if isinstance(specs, dict) else [specs]
    elif isinstance(specs, dict):
        specs = [specs]
    if specs is not None and not isinstance(specs, (list, tuple)):
        raise LadderError(f"rewards: expected a list of reward names or {{name, weight}} entries, got {specs!r}")
    fns, weights = [], []
    for item in specs or []:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "weight", "args"}
            if "name" not in item or unknown:
                raise LadderError(f"rewards entry {item}: expected {{name: ..., weight: ..., args: {{...}}}}")
            spec, weight, args = item["name"], item.get("weight", 1.0), item.get("args")
        else:
            spec, weight, args = item, 1.0, None
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise LadderError(f"reward '{spec}': weight must be a number, got {weight!r}") from None
        fn = load_reward(spec)
        fns.append(_named(with_args(fn, str(spec), args) if args is not None else fn, str(spec)))
        weights.append(weight)
    if not fns:
        raise LadderError("no reward functions given (rewards: [...] in the recipe)")
    return fns, weights


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _label(fn) -> str:
    name = getattr(fn, "__name__", None) or repr(fn)
    spec = getattr(fn, "__ladder_spec__", None)
    return f"'{name}' ({spec})" if spec and spec != name else f"'{name}'"


def _check_signature(fn, label: str) -> None:
    """fn(completions, **kwargs): TRL passes the completions first, then every dataset column and its
    own extras (prompts, completion_ids, trainer_state) as keywords."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: the call below will tell
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    if not positional or not takes_kwargs:
        shown = f"{getattr(fn, '__name__', 'fn')}{inspect.signature(fn)}"
        raise LadderError(f"reward {label}: wrong signature {shown}; expected fn(completions, **kwargs) -> "
                          "list[float | None] (TRL also passes prompts, completion_ids, trainer_state, columns)")


# The dataset columns each built-in reward reads its gold from. Without them it returns None for every
# row: TRL turns that into a reward of 0 for all completions, and GRPO trains on nothing, silently.
GOLD_COLUMNS = {
    "math_accuracy": ("answer",),
    "code_accuracy": ("tests",),
    "countdown_accuracy": ("numbers", "target"),
    "abstention_reward": ("answer",),
}
# How to get them from common layouts (ladder.data.transforms).
GOLD_HINTS = {
    "answer": "e.g. data_transform: {answer: <gold column>}, or data_transform: gsm8k / math for those datasets",
    "tests": "e.g. data_transform: {tests: <asserts column>}, or data_transform: mbpp",
    "numbers": "countdown rows need `numbers` and `target` (`ladder data --countdown_fraction ...` makes them)",
    "target": "countdown rows need `numbers` and `target` (`ladder data --countdown_fraction ...` makes them)",
}
# What TRL itself passes every reward function, besides the dataset's columns.
TRL_KWARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


def required_columns(fn) -> tuple[str, ...]:
    """Dataset columns `fn` cannot do without: a built-in's gold columns (GOLD_COLUMNS), or a custom
    reward's parameters that have no default and that TRL does not pass itself."""
    inner, bound = fn, set()
    while True:  # down the wrappers (_named, with_args' partial): settings bound from `args` are no columns
        bound |= set(getattr(inner, "keywords", None) or ()) if isinstance(inner, functools.partial) else set()
        if not hasattr(inner, "__wrapped__"):
            break
        inner = inner.__wrapped__
    for name, builtin in _builtins().items():
        if inner is builtin:
            return GOLD_COLUMNS.get(name, ())
    try:
        params = list(inspect.signature(inner).parameters.values())
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params[1:]
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
                 and p.name not in TRL_KWARGS and p.name not in bound)


def check_columns(fns, columns, where: str | None = None) -> None:
    """Every column a reward needs is in the data (required_columns), else one line naming the reward,
    the column, the data and the columns it has."""
    have = list(columns)
    for fn in fns:
        for column in required_columns(fn):
            if column not in have:
                hint = GOLD_HINTS.get(column)
                raise LadderError(f"{where + ': ' if where else ''}reward {_label(fn)} needs column '{column}', "
                                  f"which the data does not have (columns: {', '.join(have)})"
                                  + (f"; {hint}" if hint else ""))


def validate_rewards(fns, sample: dict, where: str | None = None) -> None:
    """Call every reward once on a sample batch; any misbehaviour is a one-line LadderError naming it.

    `sample` holds `completions` plus the dataset columns (lists of the same length; `prompts` too
    if present); `where` names the data in messages. Checked: the columns each reward reads its gold
    from (check_columns), the signature, exceptions, a list of the right length, each value a finite
    int/float or None (bools and strings are refused: a reward is a number)."""
    completions = sample["completions"]
    columns = {k: v for k, v in sample.items() if k != "completions"}
    check_columns(fns, columns, where)
    for fn in fns:
        label = _label(fn)
        _check_signature(fn, label)
        try:
            result = fn(completions, **columns)
        except Exception as e:
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
            raise LadderError(f"reward {label} raised {type(e).__name__}" + (f": {first}" if first else "")) from None
        if not isinstance(result, (list, tuple)):
            raise LadderError(f"reward {label} returned {_short(result)}: expected a list of floats or None")
        if len(result) != len(completions):
            raise LadderError(f"reward {label} returned {len(result)} values for {len(completions)} completions")
        for value in result:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real
                raise LadderError(f"reward {label} returned a non-number {_short(value)} in {_short(result)}")
            if not _math.isfinite(float(value)):
                raise LadderError(f"reward {label} returned {value} (not finite) in {_short(result)}")


def sample_batch(ds, n: int = 4) -> dict:
    """What validate_rewards calls each reward with: a few rows plus plausible completions."""
    rows = ds.select(range(min(n, len(ds))))
    sample = {c: rows[c] for c in rows.column_names}
    sample["completions"] = [[{"role": "assistant", "content": "<think>1 + 1 = 2</think><answer>2</answer>"}]
                             for _ in range(len(rows))]
    return sample
