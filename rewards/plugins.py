"""Loading reward functions named in a recipe, and checking them before any training starts.

A recipe lists rewards as built-in names, `package.module:function` or `path/to/file.py:function`,
each with an optional weight:

    rewards:
      - math_accuracy                            # weight 1.0
      - {name: format_reward, weight: 0.2}
      - {name: my_rewards.py:brevity, weight: 0.1}
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math as _math
from pathlib import Path

from ladder.errors import LadderError


def _builtins() -> dict:
    from ladder.rewards import REWARDS

    return REWARDS


def load_reward(spec: str):
    """A reward function from a built-in name, `module:function` or `file.py:function`."""
    spec = str(spec).strip()
    if ":" not in spec:
        if spec not in _builtins():
            raise LadderError(f"reward '{spec}': unknown built-in (built-ins: {', '.join(sorted(_builtins()))}; "
                              "custom ones are 'module:function' or 'path/file.py:function')")
        return _builtins()[spec]
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise LadderError(f"reward '{spec}': file {path} not found")
        module_name = "ladder_reward_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise LadderError(f"reward '{spec}': importing {path} failed ({type(e).__name__}: {e})") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise LadderError(f"reward '{spec}': cannot import module '{where}' ({e})") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise LadderError(f"reward '{spec}': no function '{name}' in {where}")
    if not callable(fn):
        raise LadderError(f"reward '{spec}': '{name}' is not callable")
    return fn


def _named(fn, spec: str):
    """Keep a readable __name__ (TRL logs each reward under it) without touching the original."""
    if getattr(fn, "__name__", None) and ":" not in spec:
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper.__name__ = getattr(fn, "__name__", spec.rpartition(":")[2]) or spec
    return wrapper


def load_rewards(specs) -> tuple[list, list[float]]:
    """Recipe `rewards:` (a list of names / {name, weight} dicts, or a {name: weight} dict)
    -> (functions, weights)."""
    if isinstance(specs, (str, dict)) and not (isinstance(specs, dict) and "name" in specs):
        specs = [{"name": k, "weight": v} for k, v in specs.items()] if isinstance(specs, dict) else [specs]
    fns, weights = [], []
    for item in specs or []:
        if isinstance(item, dict):
            unknown = set(item) - {"name", "weight"}
            if "name" not in item or unknown:
                raise LadderError(f"rewards entry {item}: expected {{name: ..., weight: ...}}")
            spec, weight = item["name"], item.get("weight", 1.0)
        else:
            spec, weight = item, 1.0
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise LadderError(f"reward '{spec}': weight must be a number, got {weight!r}") from None
        fns.append(_named(load_reward(spec), str(spec)))
        weights.append(weight)
    if not fns:
        raise LadderError("no reward functions given (rewards: [...] in the recipe)")
    return fns, weights


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_rewards(fns, sample: dict) -> None:
    """Call every reward once on a sample batch; any misbehaviour is a one-line LadderError.

    `sample` holds `completions` plus the dataset columns (lists of the same length)."""
    completions = sample["completions"]
    columns = {k: v for k, v in sample.items() if k != "completions"}
    for fn in fns:
        name = getattr(fn, "__name__", repr(fn))
        try:
            inspect.signature(fn).bind(completions, **columns)
        except TypeError as e:
            raise LadderError(f"reward '{name}': wrong signature ({e}); expected "
                              "fn(completions, **kwargs) -> list[float | None]") from None
        except ValueError:  # builtins without a signature: just call them
            pass
        try:
            result = fn(completions, **columns)
        except Exception as e:
            raise LadderError(f"reward '{name}' raised {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                              if str(e) else f"reward '{name}' raised {type(e).__name__}") from None
        if not isinstance(result, (list, tuple)):
            raise LadderError(f"reward '{name}' returned {_short(result)}: expected a list of floats or None")
        if len(result) != len(completions):
            raise LadderError(f"reward '{name}' returned {len(result)} values for {len(completions)} completions")
        for value in result:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LadderError(f"reward '{name}' returned a non-number {_short(value)} in {_short(result)}")
            if not _math.isfinite(value):
                raise LadderError(f"reward '{name}' returned {value} (not finite) in {_short(result)}")
