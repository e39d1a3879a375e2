"""Checkpoint directories and their `ladder.json` manifest (stage, parent, config, metrics).

All writes are atomic: write a temp file or directory beside the target, then rename it into place,
so a run killed at any moment leaves the last good checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ladder.errors import LadderError

MANIFEST = "ladder.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike):
    """Yield a temp directory; on success it replaces `final` (old contents removed only afterwards)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(out_dir, *, stage: str, config: dict, metrics: dict | None = None,
                   parent: str | None = None, **extra) -> dict:
    from ladder.precision import record

    data = {
        "stage": stage,
        "parent": str(parent) if parent else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": config,
        "metrics": metrics or {},
        **({"precision": p} if (p := record(config)) else {}),
        **extra,
    }
    atomic_write_json(Path(out_dir) / MANIFEST, data)
    return data


def read_manifest(path) -> dict:
    """Manifest of a checkpoint dir (or of the dir holding a given ladder.json)."""
    path = Path(path)
    file = path if path.name == MANIFEST else path / MANIFEST
    if not file.is_file():
        raise LadderError(f"{path}: no {MANIFEST} here (not a ladder checkpoint or the stage did not finish)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise LadderError(f"{file}: broken manifest ({e})") from None


def update_metrics(path, metrics: dict, replace: str | None = None) -> dict:
    """Merge new metrics into an existing manifest. With `replace` (a key prefix, `ladder eval`'s "eval/"),
    the keys under it that the new metrics do not name are dropped first: an earlier eval's pass@k or judge
    would otherwise sit beside the new accuracy, and the report would mix two evals."""
    data = read_manifest(path)
    kept = {k: v for k, v in data.get("metrics", {}).items() if not (replace and k.startswith(replace))}
    data["metrics"] = {**kept, **metrics}
    atomic_write_json(Path(path) / MANIFEST, data)
    return data


def has_manifest(path) -> bool:
    return (Path(path) / MANIFEST).is_file()
