"""Load any stage's data from the built-in output dir, a local file, or a hub dataset id,
and check that the columns the stage needs are there before any expensive work starts.

    load_split("runs/tiny/data", "sft", "train")      # built-in: runs/tiny/data/sft_train.jsonl
    load_split("my_prefs.parquet", "prefs")           # a local file (jsonl, json, parquet, csv)
    load_split("openai/gsm8k", "rl", "test", name="main")   # a hub dataset (known ids get their formatter)
    load_split("my.jsonl", "rl", transform={"prompt": "question", "answer": "final"})   # see ladder.data.transforms
"""

from __future__ import annotations

from pathlib import Path

from ladder.errors import LadderError

# Columns each kind of data must have (SFT chat data may come in other layouts: see ladder.data.chat).
REQUIRED = {
    "corpus": ["text"],
    "sft": [],
    "prefs": ["chosen", "rejected"],
    "rl": ["prompt"],
}
FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _builtin_file(folder: Path, kind: str, split: str) -> Path:
    for suffix in (".jsonl", ".parquet"):
        f = folder / f"{kind}_{split}{suffix}"
        if f.is_file():
            return f
    raise LadderError(f"{folder}: no {kind}_{split}.jsonl or .parquet here (run `ladder data` first?)")


def load_split(source: str, kind: str, split: str = "train", *, name: str | None = None,
               columns: list[str] | None = None, limit: int | None = None, transform=None):
    """A `datasets.Dataset` for one split of one kind of data, with its columns checked.

    `transform` (ladder.data.transforms) maps the source's columns to the ones the stage reads: a built-in
    formatter name, a {new: old} column map, 'file.py:fn' / 'module:fn', or 'none'. Without one, a known
    hub id (openai/gsm8k, HuggingFaceH4/MATH-500, google-research-datasets/mbpp, ...) gets its formatter."""
    import datasets

    from ladder.data import transforms

    if kind not in REQUIRED:
        raise LadderError(f"unknown data kind '{kind}' (one of {sorted(REQUIRED)})")
    path = Path(source)
    if path.is_dir():
        path = _builtin_file(path, kind, split)
    if path.suffix in FILE_TYPES:
        if not path.is_file():
            raise LadderError(f"{path}: data file not found")
        try:
            ds = datasets.load_dataset(FILE_TYPES[path.suffix], data_files=str(path), split="train")
        except Exception as e:  # malformed JSON lines, unreadable parquet...
            raise LadderError(f"{path}: could not read {kind} data ({str(e).splitlines()[0][:200]})") from None
        where = str(path)
    else:
        try:
            ds = datasets.load_dataset(source, name, split=split)
        except Exception as e:
            raise LadderError(f"{source}: could not load hub dataset split '{split}' "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        where = f"{source}[{split}]"
        if transform is None and kind in transforms.KINDS:
            transform = transforms.default_for(source)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if transform is not None:
        ds = transforms.apply(ds, transform, kind, where)
    check_columns(ds, columns if columns is not None else REQUIRED[kind], where, kind)
    return ds


def check_columns(ds, needed: list[str], where: str, kind: str = "") -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise LadderError(f"{where}: missing column '{missing[0]}' needed for {kind} data "
                          f"(columns: {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise LadderError(f"{where}: no rows")
