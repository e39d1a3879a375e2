"""`ladder eval`: score checkpoints on held-out problems with the same rewards training used.

    ladder eval --run runs/tiny                       # every stage of a run, then the report card
    ladder eval --checkpoints runs/tiny/sft,runs/tiny/grpo --data my_problems.jsonl

Per checkpoint: accuracy (math_accuracy on rows with a gold answer, countdown_accuracy on
countdown rows), format rate, mean reward-model score (when the run has a reward model) and mean
completion length. Base models are prompted few-shot in the corpus format, chat models through
their chat template; the report says which.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    backend: str = "auto"  # hf, vllm, or auto: vLLM on a GPU, HF generate on CPU (faster for tiny models)
    report: bool = True

    def __post_init__(self):
        if self.backend not in ("auto", "hf", "vllm"):
            raise LadderError(f"backend must be auto, hf or vllm, got '{self.backend}'")


def score_texts(texts: list[str], rows: list[dict]) -> dict:
    """Accuracy / format / length of completions for RL-format rows: each row is scored by the reward
    its gold columns call for: `tests` (code_accuracy, in the sandbox), `answer` (math_accuracy), or
    `numbers` + `target` (countdown_accuracy)."""
    from ladder.rewards import code_accuracy, countdown_accuracy, format_reward, math_accuracy

    cols = {k: [r.get(k) for r in rows] for k in ("answer", "numbers", "target", "tests")}
    code = code_accuracy(texts, tests=cols["tests"])  # None (and nothing run) for rows without tests
    math = math_accuracy(texts, answer=cols["answer"])
    cd = countdown_accuracy(texts, numbers=cols["numbers"], target=cols["target"])
    per_row = [c if c is not None else m if m is not None else d for c, m, d in zip(code, math, cd)]
    scored = [s for s in per_row if s is not None]
    return {
        "accuracy": sum(scored) / len(scored) if scored else None,
        "format_rate": sum(f == 1.0 for f in format_reward(texts)) / len(texts),
        "mean_length": sum(len(t) for t in texts) / len(texts),
        "n": len(texts),
        "per_row": per_row,
    }


def evaluate_model(model, tokenizer, rows: list[dict], *, chat: bool = True, max_new_tokens: int = 64,
                   reward_model: str | None = None, texts: list[str] | None = None) -> dict:
    """Greedy answers to held-out rows (or the given `texts`), scored; `samples` keeps a few."""
    from ladder.generation import generate

    prompts = [r["prompt"] for r in rows]
    if texts is None:
        texts = generate(model, tokenizer, prompts, chat=chat, max_new_tokens=max_new_tokens)
    stats = score_texts(texts, rows)
    if reward_model:
        from ladder.rm import score

        stats["rm_score"] = sum(score(reward_model, prompts, texts)) / len(texts)
    stats["prompting"] = "chat template" if chat else "few-shot"
    stats["samples"] = [{"prompt": p if isinstance(p, str) else p[-1]["content"], "completion": t, "score": s}
                        for p, t, s in list(zip(prompts, texts, stats["per_row"]))[:3]]
    del stats["per_row"]
    return stats


def evaluate_sampled(model, tokenizer, rows: list[dict], *, samples: int, temperature: float,
                     max_new_tokens: int = 64, seed: int = 0, reward_model: str | None = None) -> dict:
    """`samples` answers per held-out row at `temperature`: their accuracy (`accuracy_sampled`) and, with
    a reward model, mean score (`rm_score_sampled`). What RL moves: greedy answers of an SFT model often
    already sit at the reward model's ceiling."""
    from ladder.generation import generate

    rows = rows * samples
    prompts = [r["prompt"] for r in rows]
    texts = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    out = {}
    accuracy = score_texts(texts, rows)["accuracy"]
    if accuracy is not None:
        out["accuracy_sampled"] = accuracy
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


def evaluate_checkpoint(path, rows, *, max_new_tokens=64, reward_model=None, backend: str = "hf") -> dict:
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
                           reward_model=reward_model, texts=texts)
    stats["backend"] = backend
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
    rows = load_rows(data, cfg.split, cfg.data_name, cfg.limit, cfg.data_transform)
    rm = cfg.reward_model or (str(run / "rm") if run and (run / "rm" / "ladder.json").is_file() else None)
    backend = resolve_backend(cfg.backend)
    results = {}
    for p in paths:
        stats = evaluate_checkpoint(p, rows, max_new_tokens=cfg.max_new_tokens, reward_model=rm, backend=backend)
        update_metrics(p, {f"eval/{k}": v for k, v in stats.items()})
        results[str(p)] = stats
        acc = stats["accuracy"]
        print(f"eval {p}: accuracy {acc:.1%} format {stats['format_rate']:.1%} ({stats['prompting']})"
              if acc is not None else f"eval {p}: format {stats['format_rate']:.1%}")
    if run is not None and cfg.report:
        from ladder.report import write_report

        print(write_report(run))
    return 0


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
