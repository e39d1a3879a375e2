"""Preference pairs for the stages that learn from them (the reward model, DPO): loaded from the
built-in `prefs_*.jsonl`, a local file or a hub dataset, and every row checked before any model loads.

    load_pairs("runs/tiny/data", "train", cfg)   # cfg: the stage's DataOptions (data_name, data_transform)

A pair is `chosen` / `rejected`, each text or a list of {role, content} messages, with an optional
shared `prompt` (text or messages); TRL's RewardTrainer and DPOTrainer read exactly these columns.
"""

from __future__ import annotations

from ladder.errors import LadderError

COLUMNS = ("prompt", "chosen", "rejected")


def _answer_problem(value) -> str | None:
    """Why a chosen/rejected/prompt value is not text or a list of {role, content} messages (None: it is)."""
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not value:
        return f"must be text or a list of {{role, content}} messages, got {type(value).__name__} {str(value)[:40]!r}"
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"turn {j} is not a {{role, content}} message: {str(m)[:40]!r}"
        if not isinstance(m.get("content"), str):
            return f"turn {j} ({m['role']}) has no text content"
    return None


def check_pairs(ds, where: str) -> None:
    """Every pair must have two different, non-empty answers, each text or chat messages (and the prompt,
    if there is one, text or messages too)."""
    from ladder.data.loaders import row_at
    from ladder.rewards import completion_text

    for i, row in enumerate(ds):
        for column in COLUMNS:
            if column == "prompt" and row.get("prompt") in (None, ""):
                continue
            problem = _answer_problem(row[column])
            if problem:
                raise LadderError(f"{row_at(where, i)}: '{column}' {problem}")
        chosen, rejected = completion_text(row["chosen"]), completion_text(row["rejected"])
        if not chosen.strip() or not rejected.strip():
            raise LadderError(f"{row_at(where, i)}: empty chosen or rejected answer")
        if row["chosen"] == row["rejected"]:
            raise LadderError(f"{row_at(where, i)}: chosen and rejected are identical")


def load_pairs(source: str, split: str, opts, limit=None):
    """One split of preference pairs, checked, with only the columns the trainers read (`opts`: a
    stage config with DataOptions' data_name and data_transform)."""
    from ladder.data.loaders import load_split

    ds = load_split(source, "prefs", split, name=opts.data_name, transform=opts.data_transform, limit=limit)
    check_pairs(ds, f"{source}[{split}]")
    return ds.select_columns([c for c in COLUMNS if c in ds.column_names])
