"""Recipe YAML -> a stage's dataclass config, with `--key value` overrides from the command line.

Every stage owns a dataclass (for TRL stages it subclasses TRL's own config, so every TRL option
passes through untouched). Unknown keys are an error that names the key and the file. `--help` (or
`-h`) prints every option of the stage's config, with its type, default and help, and exits 0.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ladder.errors import LadderError

T = TypeVar("T")


def option(default=dataclasses.MISSING, help: str = "", *, factory=None):
    """A config field with its `--help` text in the field's metadata, TRL's convention (config_help
    and TRL's own argument parser read it): `eval_samples: int = option(64, "held-out prompts")`;
    `rewards: list = option(factory=list, help="...")` for a default made fresh for each config."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def read_yaml(path: str | os.PathLike) -> dict:
    """A recipe file as a dict; missing file or bad YAML is a one-line LadderError."""
    path = Path(path)
    if not path.is_file():
        raise LadderError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LadderError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise LadderError(f"{path}: a recipe must be a mapping of key: value, got {type(data).__name__}")
    return data


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def check_keys(cls, data: dict, source: str) -> None:
    known = _field_names(cls)
    for key in data:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            tip = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise LadderError(f"{source}: unknown key '{key}' for {cls.__name__}{tip}")


def _parse_value(text: str) -> Any:
    """Command-line values are read as YAML scalars, so `1e-3`, `true`, `[a, b]` and `null` work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class RawValue(str):
    """A command-line value not yet typed: text for text fields, YAML for the rest."""


def _text_field(hint) -> tuple[bool, bool]:
    """(is the field text-like — str or an enum of strings —, may it be None)."""
    import enum

    if typing.get_origin(hint) in (list, dict, tuple, set):  # list[str] is YAML, not text
        return False, False
    args = typing.get_args(hint) or (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    text = bool(rest) and all(a is str or (isinstance(a, type) and issubclass(a, enum.Enum)) for a in rest)
    return text, optional


def parse_overrides(argv: list[str]) -> tuple[str | None, dict]:
    """Split `--config X --key value --flag` into (config path, overrides)."""
    config, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            # a recipe given positionally (as `ladder run` takes it) is the likeliest slip: name the fix
            tip = f" (did you mean --config {arg}?)" if arg.lower().endswith((".yaml", ".yml")) else ""
            raise LadderError(f"command line: expected --key value, got '{arg}'{tip}")
        key, _, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not _:
            # `--flag` alone (or followed by another --key) means true
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            else:
                value = "true"
        if key == "config":
            config = value
        else:
            overrides[key] = RawValue(value)  # typed later, by the field it fills
        i += 1
    return config, overrides


def _scalar(hint):
    """`float | None` -> float (likewise int), so optional numbers are coerced too."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else hint


def _coerce(cls, data: dict) -> dict:
    """YAML reads `1e-3` as a string and ints where floats are wanted; fix the obvious scalar cases."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # some third-party configs have unresolvable annotations
        hints = {}
    out = {}
    for key, value in data.items():
        hint = hints.get(key)
        if isinstance(value, RawValue):
            text, optional = _text_field(hint)
            if text:  # `--save_strategy no` stays the string "no", not YAML's False
                value = None if optional and value in ("null", "None", "~") else str(value)
            else:
                value = _parse_value(value)
        hint = _scalar(hint)
        if value is None:
            pass
        elif hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                value = float(value)
            except ValueError:
                raise LadderError(f"config key '{key}': expected a number, got '{value}'") from None
        elif hint is int and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise LadderError(f"config key '{key}': expected an integer, got '{value}'") from None
        elif hint is bool and isinstance(value, str):  # `--flag maybe` would otherwise pass as a truthy string
            raise LadderError(f"config key '{key}': expected true or false, got '{value}'")
        out[key] = value
    return out


def build_config(cls: type[T], data: dict, source: str = "config") -> T:
    """The config from recipe data; every problem (a bad value, a check in the config's __post_init__,
    ladder's or TRL's) is one LadderError line that starts with the recipe file."""
    check_keys(cls, data, source)
    try:
        return cls(**_coerce(cls, data))
    except LadderError as e:
        text = str(e)
        raise LadderError(text if text.startswith(f"{source}:") else f"{source}: {text}") from None
    except (TypeError, ValueError) as e:
        raise LadderError(f"{source}: {str(e).splitlines()[0]}") from None


def check_generation_groups(cfg) -> None:
    """GRPO scores each prompt's `num_generations` completions as one group: the completions generated
    at once (per_device_train_batch_size x processes x steps_per_generation, or generation_batch_size)
    must split into whole groups. Call in a GRPO config's __post_init__, before TRL's: one line naming
    the options, instead of TRL's message about a generation_batch_size the recipe never set."""
    groups = getattr(cfg, "num_generations", None)
    if groups is None:
        return
    if not isinstance(groups, int) or groups < 2:
        raise LadderError(f"num_generations must be at least 2 (GRPO compares completions of the same prompt), "
                          f"got {groups!r}")
    if getattr(cfg, "generation_batch_size", None):
        total, how = cfg.generation_batch_size, f"generation_batch_size ({cfg.generation_batch_size})"
    else:  # as TRL computes it
        world = int(os.environ.get("WORLD_SIZE", "1"))
        own_steps = getattr(cfg, "steps_per_generation", None)
        steps = own_steps or cfg.gradient_accumulation_steps
        total = cfg.per_device_train_batch_size * world * steps
        parts = [f"per_device_train_batch_size ({cfg.per_device_train_batch_size})"]
        parts += [f"{world} processes"] if world > 1 else []
        parts += [f"{steps} {'steps_per_generation' if own_steps else 'gradient_accumulation_steps'}"] if steps > 1 else []
        how = " x ".join(parts) + (f" = {total}" if len(parts) > 1 else "")
    if total % groups:
        fits = [n for n in range(2, total + 1) if total % n == 0]
        raise LadderError(f"{how} completions must split into groups of num_generations ({groups}): "
                          f"make the batch a multiple of {groups}, or num_generations one of {fits[:8]}")


HELP_FLAGS = ("--help", "-h")


def load_config(cls: type[T], argv: list[str] | None = None) -> T:
    """The stage entry point's one call: `--config recipe.yaml` plus `--key value` overrides.

    With `--help` or `-h` anywhere on the command line it prints the config's options instead
    (config_help) and exits 0 (SystemExit, as argparse does)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in HELP_FLAGS for arg in argv):
        print(config_help(cls))
        raise SystemExit(0)
    path, overrides = parse_overrides(argv)
    data = read_yaml(path) if path else {}
    source = path or "command line"
    check_keys(cls, data, source)
    check_keys(cls, overrides, "command line")
    data.update(overrides)
    return build_config(cls, data, source)


# --- --help ----------------------------------------------------------------------------------


def config_help(cls) -> str:
    """Every option of a stage config, one line each: `--name TYPE = DEFAULT  help`.

    Grouped by the class that declares the option, in method-resolution order: the stage's own
    (ladder) fields first, then those it inherits (TRL's config, then transformers' TrainingArguments).
    A field ladder re-declares (to change a TRL default) is listed with ladder's fields, with ladder's
    default. Help is the field's `metadata["help"]` (ladder's `option(default, help)`, TRL's and
    transformers' `field(metadata={"help": ...})`), else the one of the field it overrides."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # some third-party configs have unresolvable annotations
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    groups: dict[type, list[str]] = {}
    for name in fields:
        owner = next((k for k in cls.__mro__ if name in vars(k).get("__annotations__", {})), cls)
        groups.setdefault(owner, []).append(name)
    for owner, names in groups.items():  # in the order the class declares them (a dataclass keeps
        order = list(vars(owner).get("__annotations__", {}))  # a re-declared field at its base's place)
        names.sort(key=lambda n: order.index(n) if n in order else len(order))
    owners = [k for k in cls.__mro__ if k in groups]
    owners.sort(key=lambda k: not _is_ladder(k))  # stable: ladder's classes first, each in MRO order

    lines = [f"{cls.__name__}: set options in a recipe (--config recipe.yaml) or as --key value "
             f"(values are read as YAML: 1e-3, true, [a, b], null)."]
    for owner in owners:
        rows = []
        for name in groups[owner]:
            f = fields[name]
            left = f"  --{name} {_type_name(hints.get(name, f.type))} = {_default_text(f)}"
            rows.append((left, _field_help(cls, name)))
        width = min(max(len(left) for left, _ in rows), 56)
        lines += ["", f"{_package(owner)} ({owner.__name__}):"]
        lines += [f"{left:<{width}}  {text}".rstrip() if text else left for left, text in rows]
    return "\n".join(lines)


def _package(klass) -> str:
    """The package a class comes from; under `python -m ladder.eval` ladder's module is `__main__`."""
    module = klass.__module__
    if module == "__main__":
        module = getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None) or module
    return module.split(".")[0]


def _is_ladder(klass) -> bool:
    return _package(klass) == "ladder"


def _field_help(cls, name: str) -> str:
    """The first `metadata["help"]` for this field along the MRO, on one line."""
    for klass in cls.__mro__:
        f = vars(klass).get("__dataclass_fields__", {}).get(name)
        text = f.metadata.get("help") if f is not None else None
        if text:
            return " ".join(str(text).replace("%%", "%").split())  # argparse-escaped %
    return ""


def _type_name(hint) -> str:
    """`int | None`, `list[str]`, `{no,steps,epoch} | str` (small enums show their values)."""
    if hint is type(None):
        return "None"
    if isinstance(hint, str):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum) and len(hint) <= 6:
            return "{" + ",".join(str(m.value) for m in hint) + "}"
        return hint.__name__
    return str(hint).replace("typing.", "")


def _default_text(f) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        try:
            value = f.default_factory()
        except Exception:
            return "(computed)"
    else:
        return "(required)"
    if isinstance(value, enum.Enum):
        value = value.value
    return repr(value) if isinstance(value, str) else str(value)


def to_dict(config) -> dict:
    """A config as plain YAML/JSON-safe data, for the manifest."""
    if hasattr(config, "to_dict"):  # transformers TrainingArguments hides tokens etc.
        data = config.to_dict()
    else:
        data = dataclasses.asdict(config)
    return _jsonable(data)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "value") and isinstance(getattr(value, "value"), (str, int)):  # enums
        return value.value
    return str(value)
