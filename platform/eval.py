"""`ladder eval`: score checkpoints on held-out problems with the same rewards training used.

    ladder eval --run runs/tiny                       # every stage of a run, then the report card
    ladder eval --checkpoints runs/tiny/sft,runs/tiny/grpo --data my_problems.jsonl

Per checkpoint: accuracy with its standard error, overall and per kind of problem (the rows' `kind`
column: `2-digit +`, ...; math_accuracy on rows with a gold answer, countdown_accuracy on countdown
rows, code_accuracy on rows with tests), format rate, mean completion and thinking length, mean
reward-model score (when the run has a reward model), the mean of every `judge` (functions that score
completions for evaluation only, e.g. the hidden human of the tiny ladder), and with `pass_k`,
pass@1 and pass@k from k samples per problem (and, from them, the reliability buckets the report plots:
greedy accuracy against sampled pass-rate); the share of answers that abstain ("I don't know") and the
share wrong among the rest (hallucination). Every answer goes to `eval_completions.jsonl` in the
checkpoint's directory (prompt, completion, score and the row's gold columns), every metric into its
ladder.json as `eval/*`, replacing the whole block an earlier eval wrote there. Base models are prompted
few-shot in the corpus format, chat models through their chat template; the report says which.

A checkpoint trained with tools (its ladder.json's config.tools: GRPO with `tools: [calculator]`) answers
with them, through the loop it was trained with (ladder.generation.generate_with_tools), scored on its
final answer (the last assistant message, never a tool's output), plus how it used them: tool_call_rate,
tool_error_rate, accuracy_with_tool / accuracy_without_tool (per kind too); and, with
`compare_without_tools`, once more without tools (accuracy_no_tools): what the tools are worth to it.
`--tools '[calculator]'` gives every chat checkpoint these tools, `--tools '[]'` none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option
from ladder.errors import LadderError
from ladder.evaluation import COMPLETIONS, evaluate_checkpoint, has_gold, load_judges, load_rows, resolve_backend

EVAL = "eval/"  # the prefix of every metric eval writes into a checkpoint's manifest


@dataclass
class EvalConfig:
    run: str | None = option("runs/tiny", "evaluate every finished stage of this run (and write its report)")
    checkpoints: list[str] | str | None = option(
        None, "or these checkpoint dirs; eval writes into each: its metrics into ladder.json (eval/*, replacing an "
              "earlier eval's), every answer into eval_completions.jsonl")
    data: str | None = option(None, "held-out prompts with gold columns; default: the run's data dir")
    data_name: str | None = option(None, "hub dataset config name")
    data_transform: str | dict | None = option(
        None,
        "the source's columns -> the stage's: gsm8k, {prompt: question}, file.py:fn or none; unset: known hub ids get "
        "their built-in formatter")
    split: str = option("test", "the held-out split scored")
    limit: int | None = option(200, "the first this many held-out problems (None: all)")
    max_new_tokens: int = option(64, "tokens per greedy answer")
    reward_model: str | None = option(None, "default: the run's rm stage, if any")
    judge: list[str] = option(
        factory=list,
        help="functions scored on every answer for evaluation only, never a reward: names, module:fn, file.py:fn")
    pass_k: int = option(0, "k samples per problem (temperature 1) for pass@1 and pass@k of the chat rungs; 0: off")
    pass_k_limit: int | None = option(100, "problems the pass@k estimate uses (k x this many completions per rung)")
    tools: list | str | None = option(
        None, "tools the chat checkpoints may call (names, module:fn, file.py:fn); unset: each checkpoint's own "
              "(its ladder.json config.tools), [] none; base models never get tools")
    compare_without_tools: bool = option(True, "a checkpoint evaluated with tools is evaluated once more without "
                                               "them (accuracy_no_tools)")
    max_tool_calls: int | None = option(None, "rounds of tool calls per answer; unset: the checkpoint's "
                                              "max_tool_calling_iterations, else 3")
    backend: str = option("auto", "hf, vllm, or auto: vLLM on a GPU, HF generate on CPU (faster for tiny models)")
    report: bool = option(True, "write report.md, report.json and the plots into the run dir")

    def __post_init__(self):
        if self.backend not in ("auto", "hf", "vllm"):
            raise LadderError(f"backend must be auto, hf or vllm, got '{self.backend}'")
        if isinstance(self.judge, str):
            self.judge = [self.judge]
        if isinstance(self.tools, (str, dict)):
            self.tools = [self.tools]
        if self.pass_k < 0 or self.pass_k == 1:
            raise LadderError(f"pass_k must be 0 (off) or at least 2, got {self.pass_k}")


def checkpoint_tools(path, cfg) -> tuple[list, int]:
    """(tool specs, rounds of calls) a checkpoint is evaluated with: cfg.tools if set, else those in its
    manifest's config; none for a base model or a tokenizer that cannot render tools (said on one line)."""
    from ladder.generation import is_chat_model
    from ladder.manifest import read_manifest
    from ladder.models import load_tokenizer

    trained = read_manifest(path).get("config") or {}
    specs = cfg.tools if cfg.tools is not None else trained.get("tools") or []
    given = (cfg.max_tool_calls, trained.get("max_tool_calling_iterations"))
    rounds = next((r for r in given if isinstance(r, int)), 3)
    if not specs or not is_chat_model(path):
        return [], rounds
    try:
        load_tokenizer(str(path), tools=True)
    except LadderError as e:
        print(f"eval {path}: without tools ({e})")
        return [], rounds
    return list(specs), rounds


def main(argv=None) -> int:
    from ladder.manifest import atomic_write_text, read_manifest, update_metrics
    from ladder.stages import TEXT_OUTPUTS, run_stages

    cfg = load_config(EvalConfig, argv)
    if cfg.checkpoints:
        paths = [Path(p) for p in (cfg.checkpoints.split(",") if isinstance(cfg.checkpoints, str)
                                   else cfg.checkpoints)]
        run = None
    elif cfg.run:
        run = Path(cfg.run)
        if not run.is_dir():
            raise LadderError(f"eval: run '{cfg.run}': no such folder")
        paths = [p for stage, p in run_stages(run).items() if stage in TEXT_OUTPUTS]
    else:
        raise LadderError("eval: give --run or --checkpoints")
    if not paths:
        raise LadderError(f"eval: no finished checkpoints to evaluate in {cfg.run}")
    for p in paths:
        if not p.is_dir():
            raise LadderError(f"eval: checkpoint '{p}': no such folder")
        read_manifest(p)  # every checkpoint must be a finished ladder checkpoint
    data = cfg.data or (str(run / "data") if run else None)
    if data is None:
        raise LadderError("eval: give --data (held-out prompts with gold answers)")
    judges = load_judges(cfg.judge)
    rows = load_rows(data, cfg.split, cfg.data_name, cfg.limit, cfg.data_transform)
    if not has_gold(rows):  # format, lengths, RM and judges are still measured; accuracy is not
        print(f"eval: warning: {data}[{cfg.split}] has no gold column (answer, numbers + target, tests): accuracy "
              "is not measured")
    rm = cfg.reward_model or (str(run / "rm") if run and (run / "rm" / "ladder.json").is_file() else None)
    backend = resolve_backend(cfg.backend)
    results = {}
    for p in paths:
        specs, rounds = checkpoint_tools(p, cfg)
        tools = None
        if specs:
            from ladder.tools import load_tools  # here: eval runs without the tools module when none is used

            tools = load_tools(specs)
        stats = evaluate_checkpoint(p, rows, max_new_tokens=cfg.max_new_tokens, reward_model=rm, backend=backend,
                                    judges=judges, pass_k=cfg.pass_k, pass_k_rows=rows[:cfg.pass_k_limit],
                                    tools=tools, max_calls=rounds)
        if tools and cfg.compare_without_tools:
            plain = evaluate_checkpoint(p, rows, max_new_tokens=cfg.max_new_tokens, backend=backend)
            stats["accuracy_no_tools"], stats["accuracy_no_tools_se"] = plain["accuracy"], plain["accuracy_se"]
        if tools:
            stats["tools"] = [fn.__name__ for fn in tools]
        # every answer, for reading what a rung learnt (the manifest keeps three)
        atomic_write_text(p / COMPLETIONS, "".join(json.dumps(c) + "\n" for c in stats.pop("completions")))
        update_metrics(p, {f"{EVAL}{k}": v for k, v in stats.items()}, replace=EVAL)  # the stage's own stay
        results[str(p)] = stats
        acc = stats["accuracy"]
        idk = (f" abstain {stats['abstain_rate']:.1%} hallucination {stats['hallucination_rate']:.1%}"
               if stats.get("abstain_rate") and stats.get("hallucination_rate") is not None else "")
        used = ""
        if stats.get("tool_call_rate") is not None:
            used = f" tool calls {stats['tool_call_rate']:.1%}"
            if stats.get("accuracy_no_tools") is not None:
                used += f" (without tools: accuracy {stats['accuracy_no_tools']:.1%})"
        print(f"eval {p}: accuracy {acc:.1%} ± {stats['accuracy_se']:.1%} format {stats['format_rate']:.1%}{idk}"
              f"{used} ({stats['prompting']})" if acc is not None else f"eval {p}: format {stats['format_rate']:.1%}")
    if run is not None and cfg.report:
        from ladder.report import write_report

        print(write_report(run))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
