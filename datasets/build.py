"""`ladder data`: generate the built-in tasks in every format, with disjoint train/test splits.

The held-out problems are drawn first; every training text is then drawn excluding their keys,
so no test problem appears in any training text (a test checks it).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ladder.config import load_config, to_dict
from ladder.data import arithmetic, countdown
from ladder.data import formats as F
from ladder.errors import LadderError
from ladder.manifest import atomic_dir, write_manifest

SPLITS = ["corpus_train", "corpus_test", "sft_train", "sft_test", "prefs_train", "prefs_test", "rl_train", "rl_test"]


@dataclass
class DataConfig:
    output_dir: str = "runs/tiny/data"
    seed: int = 0
    levels: list[int] = field(default_factory=lambda: [1, 2])
    ops: str = "+-*"
    countdown_fraction: float = 0.1  # share of countdown problems in every split
    countdown_numbers: int = 3
    corpus_docs: int = 20000  # pretraining documents
    problems_per_doc: int = 4
    prose_fraction: float = 0.2  # worked problems told as a little story instead
    sft_train: int = 4000
    prefs_train: int = 2000
    rl_train: int = 2000
    test_size: int = 200  # held-out problems (the same set in every *_test file)
    format: str = "jsonl"  # or parquet

    def __post_init__(self):
        if self.format not in ("jsonl", "parquet"):
            raise LadderError(f"data format must be 'jsonl' or 'parquet', got '{self.format}'")
        bad = [lv for lv in self.levels if lv not in arithmetic.LEVELS]
        if bad:
            raise LadderError(f"levels: unknown level {bad[0]} (known: {sorted(arithmetic.LEVELS)})")
        if not 0 <= self.countdown_fraction <= 1:
            raise LadderError("countdown_fraction must be between 0 and 1")


class Problems:
    """Draws a mix of arithmetic and countdown problems, avoiding the held-out keys."""

    def __init__(self, cfg: DataConfig, exclude: set[str] = frozenset()):
        self.cfg, self.exclude = cfg, exclude

    def draw(self, n: int, seed: int, unique: bool = False) -> list:
        n_cd = round(n * self.cfg.countdown_fraction)
        ar = arithmetic.generate(n - n_cd, seed, self.cfg.levels, self.cfg.ops, self.exclude, unique=unique)
        cd = countdown.generate(n_cd, seed + 7919, self.cfg.countdown_numbers, self.exclude)
        mixed = ar + cd
        random.Random(seed).shuffle(mixed)
        return mixed


def build(cfg: DataConfig) -> dict[str, list[dict]]:
    test = Problems(cfg).draw(cfg.test_size, cfg.seed, unique=True)
    train = Problems(cfg, exclude={p.key for p in test})
    rng = random.Random(cfg.seed + 1)
    corpus_problems = train.draw(cfg.corpus_docs * cfg.problems_per_doc, cfg.seed + 2)
    k = cfg.problems_per_doc
    return {
        "corpus_train": [F.corpus_doc(rng, corpus_problems[i:i + k], cfg.prose_fraction)
                         for i in range(0, len(corpus_problems), k)],
        "corpus_test": [{"text": F.plain(p)} for p in test],
        "sft_train": [F.sft_row(p) for p in train.draw(cfg.sft_train, cfg.seed + 3)],
        "sft_test": [F.sft_row(p) for p in test],
        "prefs_train": [F.pref_row(rng, p) for p in train.draw(cfg.prefs_train, cfg.seed + 4)],
        "prefs_test": [F.pref_row(rng, p) for p in test],
        "rl_train": [F.rl_row(p) for p in train.draw(cfg.rl_train, cfg.seed + 5)],
        "rl_test": [F.rl_row(p) for p in test],
    }


def write_split(rows: list[dict], path: Path) -> None:
    if path.suffix == ".parquet":
        from datasets import Dataset

        Dataset.from_list(rows).to_parquet(str(path))
    else:
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


def main(argv=None) -> int:
    cfg = load_config(DataConfig, argv)
    splits = build(cfg)
    with atomic_dir(cfg.output_dir) as tmp:
        for name, rows in splits.items():
            write_split(rows, tmp / f"{name}.{cfg.format}")
        counts = {name: len(rows) for name, rows in splits.items()}
        write_manifest(tmp, stage="data", config=to_dict(cfg), metrics={"counts": counts})
    width = max(map(len, counts))
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>7,d}")
    print(f"wrote {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
