"""Publishing a stage's final HF directory next to its resumable checkpoints.

The stage writes model + tokenizer into a temp dir beside `out_dir`, then `publish` moves each
file into place (each move atomic) and writes `ladder.json` last. The rule every reader relies on:
a directory is a finished checkpoint iff its ladder.json exists. Training checkpoints
(`checkpoint-*`, `checkpoints/`) and logs already in `out_dir` are left untouched, so `--resume` works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ladder.manifest import MANIFEST, write_manifest


@contextlib.contextmanager
def staging(out_dir):
    """A temp dir on the same filesystem as `out_dir` (so renames are atomic), removed afterwards."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp, out_dir, *, stage: str, parent, config: dict, metrics: dict, **extra) -> dict:
    out = Path(out_dir)
    (out / MANIFEST).unlink(missing_ok=True)  # from here until the end, out_dir reads as unfinished
    for entry in Path(tmp).iterdir():
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    return write_manifest(out, stage=stage, parent=parent, config=config, metrics=metrics, **extra)


def export(out_dir, model, tokenizer, *, stage: str, parent, config: dict, metrics: dict,
           state_dict=None, **extra) -> dict:
    """Save a transformers model + tokenizer as a plain HF directory with its manifest."""
    with staging(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        return publish(tmp, out_dir, stage=stage, parent=parent, config=config, metrics=metrics, **extra)
