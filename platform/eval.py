"""`ladder eval`: score checkpoints on held-out problems with the same rewards training used.

    ladder eval --run runs/tiny                       # every stage of a run, then the report card
    ladder eval --checkpoints runs/tiny/sft,runs/tiny/grpo --data my_problems.jsonl

Per checkpoint: accuracy with its standard error, overall and per kind of problem (the rows' `kind`
column: `2-digit +`, ...; math_accuracy on rows with a gold answer, countdown_accuracy on countdown
rows, code_accuracy on rows with tests), format rate, mean completion and thinking length, mean
reward-model score (when the run has a reward model), the mean of every `judge` (functions that score
completions for evaluation only, e.g. the hidden human of the tiny ladder), and with `pass_k`,
pass@1 and pass@k from k samples per problem. Base models are prompted few-shot in the corpus format,
chat models through their chat template; the report says which.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ladder.config import load_config
from ladder.errors import LadderError


@dataclass
class EvalConfig:
    run: str | None = "runs/tiny"  # evaluate every finished stage of this run (and write its report)
    checkpoints: list[str] | str | None = None  # or these checkpoint dirs
    data: str | None = None  # held-out prompts with gold columns; default: the run's data dir
    data_name: str | None = None
    # the source's columns -> the stage's (ladder.data.transforms): "gsm8k", {"prompt": "question"},
    # "file.py:fn" or "none"; unset: known hub ids (openai/gsm8k, mbpp, ...) get their built-in formatter
    data_transform: str | dict | None = None
    split: str = "test"
    limit: int | None = 200
    max_new_tokens: int = 64
    reward_model: str | None = None  # default: the run's rm stage, if any
    # functions scored on every completion for evaluation only (never a reward): names, module:fn, file.py:fn
    judge: list[str] = field(default_factory=list)
    pass_k: int = 0  # k samples per problem (temperature 1) for pass@1 and pass@k of the chat rungs; 0: off
    pass_k_limit: int | None = 100  # problems the pass@k estimate uses (k x this many completions per rung)
    backend: str = "auto"  # hf, vllm, or auto: vLLM on a GPU, HF generate on CPU (faster for tiny models)
    report: bool = True

    def __post_init__(self):
        if self.backend not in ("auto", "hf", "vllm"):
            raise LadderError(f"backend must be auto, hf or vllm, got '{self.backend}'")
        if isinstance(self.judge, str):
            self.judge = [self.judge]
        if self.pass_k < 0 or self.pass_k == 1:
            raise LadderError(f"pass_k must be 0 (off) or at least 2, got {self.pass_k}")


THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample sd / sqrt(n); 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def load_judges(specs: list[str]) -> dict:
    """{name: fn} for evaluation-only scorers, loaded like rewards (a bad one fails before any model loads)."""
    from ladder.rewards import load_reward

    specs = [specs] if isinstance(specs, str) else specs or []
    return {str(s).rpartition(":")[2]: load_reward(s) for s in specs}


def score_texts(texts: list[str], rows: list[dict], judges: dict | None = None) -> dict:
    """Accuracy (and its standard error, overall and per `kind`) / format / lengths of completions for
    RL-format rows: each row is scored by the reward its gold columns call for: `tests` (code_accuracy,
    in the sandbox), `answer` (math_accuracy), or `numbers` + `target` (countdown_accuracy); plus the
    mean of each judge (`judge/<name>`)."""
    from ladder.rewards import code_accuracy, countdown_accuracy, format_reward, math_accuracy

    cols = {k: [r.get(k) for r in rows] for k in ("answer", "numbers", "target", "tests")}
    code = code_accuracy(texts, tests=cols["tests"])  # None (and nothing run) for rows without tests
    math = math_accuracy(texts, answer=cols["answer"])
    cd = countdown_accuracy(texts, numbers=cols["numbers"], target=cols["target"])
    per_row = [c if c is not None else m if m is not None else d for c, m, d in zip(code, math, cd)]
    scored = [s for s in per_row if s is not None]
    accuracy, se = mean_se(scored) if scored else (None, None)
    kinds: dict[str, list[float]] = {}
    for r, s in zip(rows, per_row):
        if s is not None and r.get("kind"):
            kinds.setdefault(r["kind"], []).append(s)
    thinks = [m.group(1) if (m := THINK.search(t)) else "" for t in texts]
    out = {
        "accuracy": accuracy,
        "accuracy_se": se,
        "per_kind": {k: {"accuracy": (m := mean_se(v))[0], "se": m[1], "n": len(v)} for k, v in sorted(kinds.items())},
        "format_rate": sum(f == 1.0 for f in format_reward(texts)) / len(texts),
        "mean_length": sum(len(t) for t in texts) / len(texts),
        "think_length": sum(len(t) for t in thinks) / len(texts),
        "n": len(texts),
        "per_row": per_row,
    }
    for name, fn in (judges or {}).items():
        values = [v for v in fn(texts, **{k: [r.get(k) for r in rows] for k in rows[0]}) if v is not None]
        out[f"judge/{name}"] = sum(values) / len(values) if values else None
    return out


def evaluate_model(model, tokenizer, rows: list[dict], *, chat: bool = True, max_new_tokens: int = 64,
                   reward_model: str | None = None, texts: list[str] | None = None, judges: dict | None = None) -> dict:
    """Greedy answers to held-out rows (or the given `texts`), scored; `samples` keeps a few."""
    from ladder.generation import generate

    prompts = [r["prompt"] for r in rows]
    if texts is None:
        texts = generate(model, tokenizer, prompts, chat=chat, max_new_tokens=max_new_tokens)
    stats = score_texts(texts, rows, judges)
    if reward_model:
        from ladder.rm import score

        stats["rm_score"] = sum(score(reward_model, prompts, texts)) / len(texts)
    stats["prompting"] = "chat template" if chat else "few-shot"
    stats["samples"] = [{"prompt": p if isinstance(p, str) else p[-1]["content"], "completion": t, "score": s}
                        for p, t, s in list(zip(prompts, texts, stats["per_row"]))[:3]]
    del stats["per_row"]
    return stats


def evaluate_sampled(model, tokenizer, rows: list[dict], *, samples: int, temperature: float,
                     max_new_tokens: int = 64, seed: int = 0, reward_model: str | None = None,
                     judges: dict | None = None) -> dict:
    """`samples` answers per held-out row at `temperature`: their accuracy (`accuracy_sampled`, which is
    pass@1), the share of rows with at least one right answer (`pass@<samples>`) and, with a reward
    model, the mean score (`rm_score_sampled`), and each judge's (`judge/<name>_sampled`). What RL moves: greedy answers of an SFT model often
    already sit at the reward model's ceiling; and RL pulls pass@1 towards pass@k."""
    from ladder.generation import generate

    n, rows = len(rows), rows * samples
    prompts = [r["prompt"] for r in rows]
    texts = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    out = {}
    stats = score_texts(texts, rows, judges)
    out.update({f"{k}_sampled": v for k, v in stats.items() if k.startswith("judge/") and v is not None})
    if stats["accuracy"] is not None:
        out["accuracy_sampled"] = stats["accuracy"]
        hits = [[s for s in stats["per_row"][i::n] if s is not None] for i in range(n)]
        hits = [h for h in hits if h]
        out[f"pass@{samples}"] = sum(max(h) for h in hits) / len(hits)
    if reward_model:
        from ladder.rm import score

        out["rm_score_sampled"] = sum(score(reward_model, prompts, texts)) / len(texts)
    return out


def load_rows(data: str, split: str = "test", name=None, limit=None, transform=None) -> list[dict]:
    from ladder.data.loaders import load_split

    return list(load_split(data, "rl", split, name=name, limit=limit, transform=transform))


def resolve_backend(backend: str) -> str:
    import torch

    from ladder.generation import vllm_available

    if backend == "auto":
        return "vllm" if torch.cuda.is_available() and vllm_available() else "hf"
    if backend == "vllm" and not vllm_available():
        raise LadderError("backend vllm: vLLM is not installed (pip install -e '.[cpu]' or '.[gpu]')")
    return backend


def evaluate_checkpoint(path, rows, *, max_new_tokens=64, reward_model=None, backend: str = "hf",
                        judges: dict | None = None, pass_k: int = 0, pass_k_rows: list | None = None) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.generation import generate_vllm, is_chat_model

    chat = is_chat_model(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = None if backend == "vllm" else AutoModelForCausalLM.from_pretrained(path)
    except Exception as e:
        raise LadderError(f"checkpoint '{path}': cannot load ({str(e).splitlines()[0][:160]})") from None
    texts = generate_vllm(path, [r["prompt"] for r in rows], chat=chat, max_new_tokens=max_new_tokens) \
        if backend == "vllm" else None
    stats = evaluate_model(model, tokenizer, rows, chat=chat, max_new_tokens=max_new_tokens,
                           reward_model=reward_model, texts=texts, judges=judges)
    stats["backend"] = backend
    if pass_k and chat and model is not None:
        sampled = evaluate_sampled(model, tokenizer, pass_k_rows or rows, samples=pass_k, temperature=1.0,
                                   max_new_tokens=max_new_tokens)
        stats["pass@1"] = sampled.get("accuracy_sampled")
        stats[f"pass@{pass_k}"] = sampled.get(f"pass@{pass_k}")
    return stats


def main(argv=None) -> int:
    from ladder.manifest import read_manifest, update_metrics
    from ladder.registry import run_stages

    cfg = load_config(EvalConfig, argv)
    if cfg.checkpoints:
        paths = [Path(p) for p in (cfg.checkpoints.split(",") if isinstance(cfg.checkpoints, str)
                                   else cfg.checkpoints)]
        run = None
    elif cfg.run:
        run = Path(cfg.run)
        paths = [p for stage, p in run_stages(run).items() if stage in ("base", "sft", "ppo", "grpo")]
    else:
        raise LadderError("eval: give --run or --checkpoints")
    if not paths:
        raise LadderError(f"eval: no finished checkpoints to evaluate in {cfg.run}")
    for p in paths:
        read_manifest(p)  # every checkpoint must be a finished ladder checkpoint
    data = cfg.data or (str(run / "data") if run else None)
    if data is None:
        raise LadderError("eval: give --data (held-out prompts with gold answers)")
    judges = load_judges(cfg.judge)
    rows = load_rows(data, cfg.split, cfg.data_name, cfg.limit, cfg.data_transform)
    rm = cfg.reward_model or (str(run / "rm") if run and (run / "rm" / "ladder.json").is_file() else None)
    backend = resolve_backend(cfg.backend)
    results = {}
    for p in paths:
        stats = evaluate_checkpoint(p, rows, max_new_tokens=cfg.max_new_tokens, reward_model=rm, backend=backend,
                                    judges=judges, pass_k=cfg.pass_k, pass_k_rows=rows[:cfg.pass_k_limit])
        update_metrics(p, {f"eval/{k}": v for k, v in stats.items()})
        results[str(p)] = stats
        acc = stats["accuracy"]
        print(f"eval {p}: accuracy {acc:.1%} ± {stats['accuracy_se']:.1%} format {stats['format_rate']:.1%} "
              f"({stats['prompting']})" if acc is not None else f"eval {p}: format {stats['format_rate']:.1%}")
    if run is not None and cfg.report:
        from ladder.report import write_report

        print(write_report(run))
    return 0


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
