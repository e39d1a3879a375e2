"""`ladder probe`: find out what a model knows, and write an SFT set that teaches it to say "I don't know".

    ladder probe --model runs/tiny/sft --data runs/tiny/data --output_dir /tmp/probe
    ladder sft --model runs/tiny/sft --data /tmp/probe --output_dir /tmp/knows

Llama 3's recipe against hallucination: a model imitating confident answers learns to sound sure of
everything; instead, probe what it knows and train it on its own right answers where it knows, and on a
refusal where it does not. Here: config -> RL-format rows (prompt + gold columns) -> `samples` answers
per question at `temperature` (ladder.evaluation.sample_answers, scored by score_texts: the held-out
path's own generation and rewards) -> each question's pass-rate -> a data directory:

- known (pass-rate >= known_threshold): one of the model's own right answers (a well-formed one first);
- unknown (pass-rate <= unknown_threshold: consistently wrong): "I don't know" in the model's answer
  format (`<think></think><answer> I don't know</answer>` for a model that answers in tags);
- mixed (in between): left out: the model is neither sure nor hopeless there, and either label would
  teach it something false about itself.

`sft_train.jsonl` holds those chats (with `answer`, `kind`, `probe` and `pass_rate` columns); the data
source's held-out files (`*_test.*`) are copied beside it, so `ladder sft --data <dir>` still scores
held-out problems and `ladder eval --data <dir>` reads the same ones. `probe.json` has the counts
(overall and per `kind`) and the histogram of right samples per question, `probe_answers.jsonl` every
sampled answer, and `ladder.json` the manifest: the directory is written whole or not at all, like
`ladder data`'s.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option, to_dict
from ladder.errors import LadderError
from ladder.evaluation import GOLD, has_gold
from ladder.manifest import atomic_dir, atomic_write_json, write_manifest

PROBE_FILE = "probe.json"


@dataclass
class ProbeConfig:
    model: str = option("runs/tiny/sft", "a chat model (SFT or later): it answers in its own format")
    data: str = option(
        "runs/tiny/data", "RL-format rows (prompt + answer / numbers+target / tests): dir, file or hub id")
    data_name: str | None = option(None, "hub dataset config name")
    data_transform: str | dict | None = option(
        None, "the source's columns -> the stage's (ladder.data.transforms), as in every stage's DataOptions")
    split: str = option("train", "the questions probed (not the held-out ones: those judge the result)")
    samples: int = option(8, "answers per question")
    temperature: float = option(1.0, "sampling temperature of the probe's answers")
    max_new_tokens: int = option(96, "tokens per sampled answer")
    limit: int | None = option(None, "the first this many questions (None: all)")
    batch_size: int = option(64, "prompts per generate call (small models on CPU: bigger batches, less overhead)")
    known_threshold: float = option(0.75, "known: at least this share of the samples right")
    unknown_threshold: float = option(0.0, "consistently wrong: at most this share right")
    idk_reply: str = option("I don't know", "the answer taught where the model does not know (must abstain)")
    # its thinking, for a model that thinks in <think> tags: none by default, so the choice between working
    # the problem out and abstaining is the first token after <think> (and the reply is short to learn)
    idk_think: str = option("", "the thinking written before the 'I don't know' answer (none by default)")
    output_dir: str = option("runs/tiny/probe", "where the SFT set, probe.json and the manifest are written")
    seed: int = option(0, "the sampling seed")

    def __post_init__(self):
        from ladder.rewards import abstained

        if self.samples < 2:
            raise LadderError(f"samples must be at least 2 (a pass-rate from one answer is a coin), got {self.samples}")
        if not 0 <= self.unknown_threshold < self.known_threshold <= 1:
            raise LadderError("thresholds: need 0 <= unknown_threshold < known_threshold <= 1, got "
                              f"unknown_threshold={self.unknown_threshold}, known_threshold={self.known_threshold}")
        if self.temperature <= 0:
            raise LadderError(f"temperature must be above 0 (greedy answers are all alike), got {self.temperature}")
        if not abstained(f"<answer>{self.idk_reply}</answer>"):
            raise LadderError(f"idk_reply {self.idk_reply!r} does not count as abstaining, so no evaluation would "
                              "see the model say it; use one of ladder.rewards.abstain.ABSTAIN_PHRASES")


def classify(rate: float | None, cfg: ProbeConfig) -> str:
    if rate is None:
        return "unscored"
    return "known" if rate >= cfg.known_threshold else "unknown" if rate <= cfg.unknown_threshold else "mixed"


def idk_answer(cfg: ProbeConfig, answers: list[str]) -> str:
    """"I don't know" as the model would write it: in its tags (with the space after an opening tag that
    the tiny format has, when its answers have one), else as a boxed final answer."""
    tagged = [a for a in answers if "<answer>" in a]
    if len(tagged) * 2 < len(answers):
        return f"\\boxed{{\\text{{{cfg.idk_reply}}}}}"
    pad = " " if sum("<answer> " in a for a in tagged) * 2 >= len(tagged) else ""
    think = "" if not any("<think>" in a for a in tagged) else \
        f"<think>{pad}{cfg.idk_think}</think>" if cfg.idk_think else "<think></think>"
    return f"{think}<answer>{pad}{cfg.idk_reply}</answer>"


def own_right_answer(answers: list[str], scores: list, well_formed: list[float]) -> str:
    """One of the model's right answers: the first well-formed one, else the first right one (a best
    one, for rewards that give part marks)."""
    best = max(range(len(answers)), key=lambda i: (scores[i] or 0.0, well_formed[i] == 1.0, -i))
    return answers[best]


def probe(model, tokenizer, rows: list[dict], cfg: ProbeConfig) -> tuple[list[dict], list[dict], dict]:
    """(SFT chats, every question with its sampled answers, counts) for `rows`."""
    from ladder.evaluation import sample_answers, score_texts
    from ladder.rewards import format_reward

    n = len(rows)
    texts = sample_answers(model, tokenizer, rows, samples=cfg.samples, temperature=cfg.temperature,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, batch_size=cfg.batch_size)
    per_row = score_texts(texts, rows * cfg.samples)["per_row"]
    formed = format_reward(texts)
    idk = idk_answer(cfg, texts)
    chats, answers = [], []
    counts = {"known": 0, "unknown": 0, "mixed": 0, "unscored": 0}
    per_kind: dict[str, dict[str, int]] = {}
    histogram: dict[str, int] = {}
    for i, row in enumerate(rows):
        mine, scores, ok = texts[i::n], per_row[i::n], formed[i::n]
        scored = [s for s in scores if s is not None]
        rate = sum(scored) / len(scored) if scored else None
        label = classify(rate, cfg)
        counts[label] += 1
        if row.get("kind"):
            per_kind.setdefault(row["kind"], {"known": 0, "unknown": 0, "mixed": 0, "unscored": 0})[label] += 1
        if rate is not None:
            key = f"{round(rate * len(scored))}/{len(scored)}"
            histogram[key] = histogram.get(key, 0) + 1
        gold = {k: row[k] for k in (*GOLD, "kind", "task") if row.get(k) not in (None, [])}
        answers.append({"prompt": row["prompt"], **gold, "pass_rate": rate, "probe": label, "samples": mine,
                        "scores": scores})
        if label in ("known", "unknown"):
            reply = own_right_answer(mine, scores, ok) if label == "known" else idk
            prompt = [{"role": "user", "content": row["prompt"]}] if isinstance(row["prompt"], str) else row["prompt"]
            chats.append({"messages": [*prompt, {"role": "assistant", "content": reply}], **gold,
                          "probe": label, "pass_rate": rate})
    order = sorted(histogram, key=lambda k: tuple(map(int, k.split("/"))))
    stats = {"questions": n, **counts, "per_kind": dict(sorted(per_kind.items())),
             "histogram": {k: histogram[k] for k in order}, "idk_answer": idk}
    return chats, answers, stats


def held_out_files(data: str) -> list[Path]:
    """The held-out splits of a data directory (`ladder data`'s *_test files), copied beside the probe set."""
    folder = Path(data).expanduser()
    return sorted(p for p in folder.glob("*_test.*") if p.is_file()) if folder.is_dir() else []


def load_questions(cfg: ProbeConfig) -> list[dict]:
    """The probed rows, checked before any model loads: RL prompts with a gold column to judge by."""
    from ladder.evaluation import load_rows

    rows = load_rows(cfg.data, cfg.split, cfg.data_name, cfg.limit, cfg.data_transform)
    if not has_gold(rows):
        raise LadderError(f"{cfg.data}[{cfg.split}]: no row has a gold column ({', '.join(GOLD)}) to judge the "
                          "model's answers by")
    return rows


def main(argv=None) -> int:
    from ladder.generation import is_chat_model
    from ladder.models import load_model, load_tokenizer
    from ladder.runtime import seed_everything, setup_process

    cfg = load_config(ProbeConfig, argv)
    setup_process()
    rows = load_questions(cfg)
    tokenizer, resized = load_tokenizer(cfg.model)
    if not is_chat_model(cfg.model):
        raise LadderError(f"model '{cfg.model}': a base model has no answer format to say \"I don't know\" in; "
                          "probe a chat model (SFT or later)")
    seed_everything(cfg.seed)
    model = load_model(cfg, tokenizer, resized, quantize=False)
    chats, answers, stats = probe(model, tokenizer, rows, cfg)
    if not chats:
        raise LadderError(f"probe: none of the {len(rows)} questions is known (>= {cfg.known_threshold} right) or "
                          f"consistently wrong (<= {cfg.unknown_threshold}): nothing to train on")
    copied = held_out_files(cfg.data)
    with atomic_dir(cfg.output_dir) as tmp:
        (tmp / "sft_train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
        (tmp / "probe_answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
        for f in copied:
            shutil.copy2(f, tmp / f.name)
        stats["held_out"] = [f.name for f in copied]
        atomic_write_json(tmp / PROBE_FILE, stats)
        write_manifest(tmp, stage="probe", parent=cfg.model, config=to_dict(cfg),
                       metrics={k: stats[k] for k in ("questions", "known", "unknown", "mixed", "unscored")})
    print(f"probe: {stats['questions']} questions x {cfg.samples} samples: {stats['known']} known, "
          f"{stats['unknown']} unknown (taught \"{cfg.idk_reply}\"), {stats['mixed']} mixed (left out)")
    if not copied:
        print(f"probe: {cfg.data} has no held-out *_test files to copy: give `ladder sft` a --test_data")
    print(f"wrote {cfg.output_dir} ({len(chats)} chats in sft_train.jsonl)")
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
