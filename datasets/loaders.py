"""Load any stage's data from the built-in output dir, a local file, or a hub dataset id,
and check that the columns the stage needs are there before any expensive work starts.

    load_split("runs/tiny/data", "sft", "train")      # built-in: runs/tiny/data/sft_train.jsonl
    load_split("my_prefs.parquet", "prefs")           # a local file (jsonl, json, parquet, csv)
    load_split("openai/gsm8k", "rl", "test", name="main")   # a hub dataset (known ids get their formatter)
    load_split("my.jsonl", "rl", transform={"prompt": "question", "answer": "final"})   # see ladder.data.transforms
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from ladder.config import option
from ladder.errors import LadderError

# Columns each kind of data must have (SFT chat data may come in other layouts: see ladder.data.chat).
REQUIRED = {
    "corpus": ["text"],
    "sft": [],
    "prefs": ["chosen", "rejected"],
    "rl": ["prompt"],
}
FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class DataOptions:
    """Where a training stage's rows come from: the same recipe keys in SFT, RM, GRPO and PPO."""

    data: str = option("runs/tiny/data", "built-in data dir (`ladder data`), a .jsonl/.parquet/.csv file, or a hub id")
    data_name: str | None = option(None, "hub dataset config name")
    # the source's columns -> the stage's (ladder.data.transforms): "gsm8k", {"prompt": "question"},
    # "file.py:fn" or "none"; unset: known hub ids (openai/gsm8k, mbpp, ...) get their built-in formatter
    data_transform: str | dict | None = option(
        None,
        "the source's columns -> the stage's: gsm8k, {prompt: question}, file.py:fn or none; unset: known hub ids get "
        "their built-in formatter")
    train_split: str = option("train", "the split trained on")
    test_split: str | None = option("test", "held-out rows: eval loss, pairwise accuracy, before/after scores")
    max_train_samples: int | None = option(None, "use only the first N training rows")


def _builtin_file(folder: Path, kind: str, split: str) -> Path:
    for suffix in (".jsonl", ".parquet"):
        f = folder / f"{kind}_{split}{suffix}"
        if f.is_file():
            return f
    raise LadderError(f"{folder}: no {kind}_{split}.jsonl or .parquet here (run `ladder data` first?)")


def looks_local(source: str) -> bool:
    """A path, not a hub id: absolute, ./ ../ ~, a file name with a known suffix, or deeper than org/name."""
    text = str(source)
    return (text.startswith(("/", "./", "../", "~", "\\")) or Path(text).suffix in FILE_TYPES
            or text.count("/") >= 2 or Path(text).exists())


def load_split(source: str, kind: str, split: str = "train", *, name: str | None = None,
               columns: list[str] | None = None, limit: int | None = None, transform=None):
    """A `datasets.Dataset` for one split of one kind of data, with its columns checked.

    `transform` (ladder.data.transforms) maps the source's columns to the ones the stage reads: a built-in
    formatter name, a {new: old} column map, 'file.py:fn' / 'module:fn', or 'none'. Without one, a known
    hub id (openai/gsm8k, HuggingFaceH4/MATH-500, google-research-datasets/mbpp, ...) gets its formatter.
    Every problem (no such file, an empty one, a line that is not JSON, a missing column, a prompt that
    is neither text nor messages) is a one-line LadderError naming the file and the line, row or column."""
    import datasets

    from ladder.data import transforms

    if kind not in REQUIRED:
        raise LadderError(f"unknown data kind '{kind}' (one of {sorted(REQUIRED)})")
    path = Path(source).expanduser()
    if path.is_dir():
        path = _builtin_file(path, kind, split)
    if path.is_file() and path.suffix not in FILE_TYPES:
        raise LadderError(f"{path}: unsupported data file type '{path.suffix}' "
                          f"(use {', '.join(FILE_TYPES)}, or a folder made by `ladder data`)")
    if path.suffix in FILE_TYPES:
        ds = read_file(path, kind)
        where = str(path)
    elif looks_local(source):
        raise LadderError(f"{source}: no such file or directory")
    else:
        try:
            ds = datasets.load_dataset(source, name, split=split)
        except Exception as e:
            raise LadderError(f"{source}: not a local file or folder, and could not load hub dataset split "
                              f"'{split}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        where = f"{source}[{split}]"
        if transform is None and kind in transforms.KINDS:
            transform = transforms.default_for(source)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if transform is not None:
        ds = transforms.apply(ds, transform, kind, where)
    check_columns(ds, columns if columns is not None else REQUIRED[kind], where, kind)
    if kind == "rl":
        check_prompts(ds, where)
    elif kind == "corpus":
        check_text(ds, where)
    return ds


def read_file(path: Path, kind: str):
    """A local data file as a Dataset; missing, empty or unreadable files name the file (and for JSON
    Lines, the first line that is not JSON)."""
    import datasets

    if not path.is_file():
        raise LadderError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise LadderError(f"{path}: empty file (no rows)")
    try:
        # JSON: a column whose rows differ in shape (calls to different tools) becomes datasets' Json type
        # instead of one struct that fills every missing key with None
        mixed = {"on_mixed_types": "use_json"} if FILE_TYPES[path.suffix] == "json" else {}
        with _json_loader_quiet():
            ds = datasets.load_dataset(FILE_TYPES[path.suffix], data_files=str(path), split="train", **mixed)
    except Exception as e:  # malformed JSON lines, unreadable parquet, ragged csv...
        if FILE_TYPES[path.suffix] != "parquet" and not path.read_bytes().strip():
            raise LadderError(f"{path}: empty file (no rows)") from None
        bad = first_bad_json_line(path) if FILE_TYPES[path.suffix] == "json" else None
        raise LadderError(f"{path}: {bad or f'could not read {kind} data ({_root_cause(e)})'}") from None
    if len(ds) == 0 or not ds.column_names:
        raise LadderError(f"{path}: no rows")
    return ds


@contextlib.contextmanager
def _json_loader_quiet():
    """datasets' JSON loader logs its own 'Failed to load JSON ... in row 2' (0-based) before raising;
    read_file turns every such failure into one line naming the file's line: keep the user to that one."""
    import logging

    logger = logging.getLogger("datasets.packaged_modules.json.json")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def first_bad_json_line(path: Path) -> str | None:
    """'line N: not valid JSON (...)' for the first JSON Lines line that does not parse (None if all
    do). A .json file holding one JSON document (an array of rows) is checked as a whole."""
    import json

    text = path.read_text(errors="replace")
    if path.suffix == ".json" and text.lstrip()[:1] in ("[", "{"):
        try:
            json.loads(text)
            return None
        except ValueError:
            pass  # perhaps JSON Lines after all: find the line
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            return f"line {number}: not valid JSON ({str(e).split(':')[0]}: {line.strip()[:60]!r})"
        if not isinstance(row, dict):
            return f"line {number}: a row must be a JSON object of columns, got {type(row).__name__}"
    return None


def _root_cause(e: BaseException) -> str:
    """The innermost message of an exception chain (datasets wraps the real reason in 'An error occurred')."""
    messages = []
    while e is not None and len(messages) < 8:
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        if text:
            messages.append(text)
        e = e.__cause__ or e.__context__
    generic = ("An error occurred while generating the dataset",)
    useful = [m for m in messages if not m.startswith(generic)]
    return (useful or messages or ["unknown error"])[0]


def row_at(where: str, i: int) -> str:
    """How an error names row `i` (datasets' 0-based index) of the data `where` names. A JSON Lines file:
    `file: line N`, as an editor numbers its lines and as a line that is not JSON is named (the reader
    skips blank lines; they are counted here). Anything else (parquet, csv, a JSON array, a hub split):
    `where row i`, datasets' own index. `where` is a file path, or `source[split]` as the stages write it
    (a file has that one split). Called only on the way to an error, so reading the file again is cheap."""
    import json

    name = re.sub(r"\[[^\[\]]*\]$", "", where)
    path = Path(name).expanduser()
    if path.suffix not in (".jsonl", ".json") or not path.is_file():
        return f"{where} row {i}"
    text = path.read_text(errors="replace")
    if path.suffix == ".json":
        try:
            json.loads(text)
            return f"{where} row {i}"  # one JSON document (an array of rows): its rows are not lines
        except ValueError:
            pass  # JSON Lines after all
    # "\n" alone ends a line for the JSON reader (a U+2028 inside a string does not)
    rows = (number for number, line in enumerate(text.split("\n"), 1) if line.strip())
    number = next((n for k, n in enumerate(rows) if k == i), None)
    return f"{name}: line {number}" if number is not None else f"{where} row {i}"


def _is_messages(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)


def check_prompts(ds, where: str) -> None:
    """RL prompts are text or a list of {role, content} messages, never empty."""
    for i, prompt in enumerate(ds["prompt"]):
        if isinstance(prompt, str):
            if not prompt.strip():
                raise LadderError(f"{row_at(where, i)}: empty prompt")
        elif not _is_messages(prompt):
            raise LadderError(f"{row_at(where, i)}: prompt must be text or a list of {{role, content}} messages, "
                              f"got {_short(prompt)}")


def check_text(ds, where: str) -> None:
    """Corpus text is a string column: read from the schema (a corpus can be millions of rows)."""
    feature = ds.features.get("text")
    if getattr(feature, "dtype", None) in ("string", "large_string"):
        return
    first = next((i for i, t in enumerate(ds.select(range(min(len(ds), 1000)))["text"]) if not isinstance(t, str)), 0)
    raise LadderError(f"{row_at(where, first)}: text must be a string, got {_short(ds[first]['text'])}")


def _short(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_columns(ds, needed: list[str], where: str, kind: str = "") -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise LadderError(f"{where}: missing column '{missing[0]}' needed for {kind} data "
                          f"(columns: {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise LadderError(f"{where}: no rows")


def held_out_source(data: str, test_data: str | None, test_split: str | None) -> str | None:
    """Where held-out rows come from: `test_data` if given, else `data`'s test split. A single local
    file has no splits (reading it again would score the model on its own training rows): none."""
    from pathlib import Path

    if test_data:
        return test_data
    if not test_split or Path(data).suffix in FILE_TYPES:
        return None
    return data
