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


def summary(metrics: dict) -> str:
    """The numbers of a manifest's metrics on one line, for a stage's last words."""
    return " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def export(out_dir, model, tokenizer, *, stage: str, parent, config: dict, metrics: dict,
           state_dict=None, **extra) -> dict:
    """Save a transformers model + tokenizer as a plain HF directory with its manifest."""
    with staging(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        return publish(tmp, out_dir, stage=stage, parent=parent, config=config, metrics=metrics, **extra)


# ---------------------------------------------------------------- resumable training state
# For ladder's own loops (pretrain, PPO); TRL stages use the Trainer's checkpoint-N dirs.

def saved_states(output_dir) -> list[Path]:
    """Complete training states, oldest first (one is complete once renamed into place)."""
    root = Path(output_dir) / "checkpoints"
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def save_state(accelerator, output_dir, step: int, keep: int = 2) -> None:
    """accelerator.save_state (model, optimizer, scheduler, RNG, on every engine) into a temp dir,
    renamed to checkpoints/step-N only when complete; older states beyond `keep` are removed."""
    from ladder.manifest import atomic_write_json

    root = Path(output_dir) / "checkpoints"
    final, tmp = root / f"step-{step:07d}", root / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / "progress.json", {"step": step})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in saved_states(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_latest_state(accelerator, output_dir) -> int:
    """Restore the newest complete state; returns its step (0 when there is none)."""
    import json

    states = saved_states(output_dir)
    if not states:
        accelerator.print(f"resume: no saved state under {output_dir}/checkpoints, starting fresh")
        return 0
    accelerator.load_state(str(states[-1]))
    step = json.loads((states[-1] / "progress.json").read_text())["step"]
    accelerator.print(f"resumed from {states[-1]} at step {step}")
    return step


def last_checkpoint(output_dir) -> str | None:
    """The newest complete Trainer checkpoint in output_dir (`checkpoint-N`), or None.

    The Trainer writes a checkpoint in place, trainer_state.json last: a run killed while saving
    leaves a `checkpoint-N` without it (or with half of it), and resuming from that one would fail or
    start from a half-saved state. So only checkpoints whose trainer_state.json reads are candidates;
    the one before (kept until the new one is complete) is used instead."""
    import json
    from pathlib import Path

    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    root = Path(output_dir)
    if not root.is_dir():
        return None
    steps = {}
    for path in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rpartition("-")[2]
        if not step.isdigit() or not path.is_dir():
            continue
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text())
        except (OSError, ValueError):
            print(f"resume: skipping {path}: incomplete (killed while saving?)")
            continue
        steps[int(step)] = path
    return str(steps[max(steps)]) if steps else None
