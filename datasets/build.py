"""`ladder data`: generate the built-in tasks in every format, with disjoint train/test splits.

The held-out problems are drawn first, from `test_levels` (by default two-digit problems only);
every training text is then drawn from `levels` excluding their keys, so no test problem appears
in any training text (a test checks it), while every one-digit fact the test problems are made of
is trained: the held-out set tests what generalises, not facts no model could have seen.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option, to_dict
from ladder.data import arithmetic, countdown
from ladder.data import formats as F
from ladder.errors import LadderError
from ladder.manifest import atomic_dir, write_manifest

SPLITS = ["corpus_train", "corpus_test", "sft_train", "sft_test", "prefs_train", "prefs_test", "rl_train", "rl_test"]


@dataclass
class DataConfig:
    output_dir: str = option("runs/tiny/data", "where the data files are written")
    seed: int = option(0, "every draw of problems and texts")
    levels: list[int] = option(
        factory=lambda: [1, 2],
        help="training problems: levels drawn uniformly from this list (repeat one to weigh it: [1, 2, 2, 2])")
    test_levels: list[int] = option(factory=lambda: [2], help="held-out problems")
    ops: str = option("+-*", "operations used: a string of + - *")
    # share of answers that work the problem out in steps, the rest answer at once: in the pretraining
    # corpus (textbooks show their working) and in the chat data (SFT replies, preference pairs)
    corpus_steps_fraction: float = option(
        0.7, "share of pretraining-corpus answers worked out in steps (the rest answer at once)")
    steps_fraction: float = option(0.2, "share of chat answers (SFT replies, preference pairs) worked out in steps")
    countdown_fraction: float = option(0.0, "share of countdown problems in every split")
    countdown_numbers: int = option(3, "numbers given in a countdown problem")
    corpus_docs: int = option(20000, "pretraining documents")
    problems_per_doc: int = option(4, "problems per pretraining document")
    prose_fraction: float = option(0.2, "worked problems told as a little story instead")
    sft_train: int = option(4000, "SFT chats")
    prefs_train: int = option(2000, "preference pairs")
    rl_train: int = option(2000, "RL prompts")
    test_size: int = option(200, "held-out problems (the same set in every *_test file)")
    tool_fraction: float = option(0.0, "share of SFT chats (arithmetic) that call the calculator instead, half "
                                       "of them on a three-digit problem: train them with `tools: [calculator]`")
    format: str = option("jsonl", "or parquet")

    def __post_init__(self):
        if self.format not in ("jsonl", "parquet"):
            raise LadderError(f"data format must be 'jsonl' or 'parquet', got '{self.format}'")
        # a bad choice fails here, in one line listing what is allowed, not as a KeyError/IndexError mid-draw
        if not isinstance(self.ops, str) or not self.ops or any(op not in arithmetic.OPS for op in self.ops):
            raise LadderError(f"ops: a string of operations from {' '.join(arithmetic.OPS)} "
                              f"(e.g. '{arithmetic.OPS}'), got {self.ops!r}")
        for name in ("levels", "test_levels"):
            if not isinstance(getattr(self, name), list):
                raise LadderError(f"{name}: a list of levels from {sorted(arithmetic.LEVELS)} "
                                  f"(e.g. [1, 2]), got {getattr(self, name)!r}")
            bad = [lv for lv in getattr(self, name) if lv not in arithmetic.LEVELS]
            if bad:
                raise LadderError(f"{name}: unknown level {bad[0]} (known: {sorted(arithmetic.LEVELS)})")
            if not getattr(self, name):
                raise LadderError(f"{name}: no level given (known: {sorted(arithmetic.LEVELS)})")
        if self.countdown_numbers < 2:  # a countdown problem combines at least two numbers
            raise LadderError(f"countdown_numbers must be at least 2, got {self.countdown_numbers}")
        for name in ("countdown_fraction", "steps_fraction", "corpus_steps_fraction", "tool_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise LadderError(f"{name} must be between 0 and 1, got {getattr(self, name)}")


class Problems:
    """Draws a mix of arithmetic and countdown problems, avoiding the held-out keys."""

    def __init__(self, cfg: DataConfig, levels: list[int], exclude: set[str] = frozenset()):
        self.cfg, self.levels, self.exclude = cfg, levels, exclude

    def draw(self, n: int, seed: int, unique: bool = False) -> list:
        n_cd = round(n * self.cfg.countdown_fraction)
        ar = arithmetic.generate(n - n_cd, seed, self.levels, self.cfg.ops, self.exclude, unique=unique)
        # a countdown solution whose steps work a held-out problem (18 - 12 = 6) would leak it: drawn anew
        cd = [p for p in countdown.generate(2 * n_cd + 20, seed + 7919, self.cfg.countdown_numbers, self.exclude)
              if not any(step.split(" = ")[0] in self.exclude for step in p.steps.split(", "))][:n_cd]
        if len(cd) < n_cd:
            raise LadderError(f"cannot draw {n_cd} countdown problems apart from the held-out ones")
        mixed = ar + cd
        random.Random(seed).shuffle(mixed)
        return mixed


def build(cfg: DataConfig) -> dict[str, list[dict]]:
    # a held-out problem is never one that worked solutions use as a step (15 - 8 in 85 - 38)
    test = Problems(cfg, cfg.test_levels, exclude=arithmetic.step_facts()).draw(cfg.test_size, cfg.seed, unique=True)
    train = Problems(cfg, cfg.levels, exclude={p.key for p in test})
    rng = random.Random(cfg.seed + 1)
    corpus_problems = train.draw(cfg.corpus_docs * cfg.problems_per_doc, cfg.seed + 2)
    sft_problems = train.draw(cfg.sft_train, cfg.seed + 3)
    k, sf, csf = cfg.problems_per_doc, cfg.steps_fraction, cfg.corpus_steps_fraction
    splits = {
        "corpus_train": [F.corpus_doc(rng, corpus_problems[i:i + k], cfg.prose_fraction, csf)
                         for i in range(0, len(corpus_problems), k)],
        "corpus_test": [{"text": F.plain(p, rng.random() < csf)} for p in test],
        "sft_train": [F.sft_row(rng, p, sf) for p in sft_problems],
        "sft_test": [F.sft_row(rng, p, sf) for p in test],
        "prefs_train": [F.pref_row(rng, p, sf) for p in train.draw(cfg.prefs_train, cfg.seed + 4)],
        "prefs_test": [F.pref_row(rng, p, sf) for p in test],
        "rl_train": [F.rl_row(p) for p in train.draw(cfg.rl_train, cfg.seed + 5)],
        "rl_test": [F.rl_row(p) for p in test],
    }
    if cfg.tool_fraction:
        add_tool_chats(splits["sft_train"], sft_problems, cfg.tool_fraction, cfg.seed + 6)
    return splits


def add_tool_chats(rows: list[dict], problems: list, fraction: float, seed: int) -> None:
    """Turn `fraction` of the arithmetic chats into calculator calls, in place: half on the chat's own
    problem, half on a three-digit one instead. A model that knows the training problems can answer them
    without reading the tool's result (measured: a tiny model trained on calls for its own problems alone
    ignored the result and answered held-out ones from its own sums); three-digit sums it cannot know,
    so those chats teach it to read the result. A random generator of its own: every other text is drawn
    exactly as without tools, so a tool ladder differs from the default by these chats alone."""
    rng = random.Random(seed)
    for i, (row, p) in enumerate(zip(rows, problems)):
        if row["task"] == "arithmetic" and rng.random() < fraction:
            if rng.random() < 0.5:
                p = arithmetic.sample(rng, 3)
            rows[i] = {**row, "messages": F.calculator_chat(p), "answer": F.gold(p), "kind": F.kind(p)}


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
    from ladder.runtime import stage_entry

    stage_entry(main)
