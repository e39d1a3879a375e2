"""Recipe YAML -> a stage's dataclass config, with `--key value` overrides from the command line.

Every stage owns a dataclass (for TRL stages it subclasses TRL's own config, so every TRL option
passes through untouched). Unknown keys are an error that names the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ladder.errors import LadderError

T = TypeVar("T")


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
            raise LadderError(f"command line: expected --key value, got '{arg}'")
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
        out[key] = value
    return out


def build_config(cls: type[T], data: dict, source: str = "config") -> T:
    check_keys(cls, data, source)
    try:
        return cls(**_coerce(cls, data))
    except LadderError:
        raise
    except (TypeError, ValueError) as e:
        raise LadderError(f"{source}: {str(e).splitlines()[0]}") from None


def load_config(cls: type[T], argv: list[str] | None = None) -> T:
    """The stage entry point's one call: `--config recipe.yaml` plus `--key value` overrides."""
    argv = sys.argv[1:] if argv is None else list(argv)
    path, overrides = parse_overrides(argv)
    data = read_yaml(path) if path else {}
    source = path or "command line"
    check_keys(cls, data, source)
    check_keys(cls, overrides, "command line")
    data.update(overrides)
    return build_config(cls, data, source)


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
