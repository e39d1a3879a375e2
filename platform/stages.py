"""The rungs of the ladder, in one table: what each stage is called, which module runs it, where it
writes in a run, what it reads, and whether it makes a model that writes text.

The CLI, `ladder run`, the registry, eval, the report and the app all read this table (and the
report's metric columns below), so a new rung is one row here plus its module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ladder.manifest import MANIFEST


@dataclass(frozen=True)
class Stage:
    name: str  # the command (`ladder <name>`) and the recipe section of `ladder run`
    module: str  # `python -m <module>` / `accelerate launch -m <module>`
    output: str  # its directory inside a run: runs/<run>/<output>
    config: str  # its config dataclass, in `module` (recipe keys and `--help` come from its fields)
    doc: str  # one line for `ladder --help`
    inputs: dict = field(default_factory=dict)  # {config key: output dir it reads}, filled in by `ladder run`
    writes_text: bool = False  # a model that answers prompts: evaluated, shown in the app
    rl: bool = False  # trained on its own samples: the report plots its RL curves
    optional: bool = False  # run by `ladder run` only when the recipe has its section


STAGES = (
    Stage("data", "ladder.data.build", "data", "DataConfig",
          "generate the built-in tasks in every format (corpus, SFT, prefs, RL)"),
    Stage("tokenizer", "ladder.pretrain.tokenizer", "tokenizer", "TokenizerConfig",
          "train a byte-level BPE tokenizer with a chat template", {"data": "data"}),
    Stage("pretrain", "ladder.pretrain.train", "base", "PretrainConfig",
          "pretrain a Llama-style base model from scratch (accelerate)",
          {"data": "data", "tokenizer": "tokenizer"}, writes_text=True),
    Stage("sft", "ladder.sft", "sft", "SFTStageConfig",
          "supervised fine-tuning on chat data (TRL SFTTrainer, LoRA/QLoRA)",
          {"model": "base", "data": "data"}, writes_text=True),
    # Probe writes data, not a model: what the SFT model knows, for an SFT run that teaches it "I don't know".
    Stage("probe", "ladder.probe", "probe", "ProbeConfig",
          "sample the model k times per question: an SFT set of its right answers and \"I don't know\"",
          {"model": "sft", "data": "data"}, optional=True),
    Stage("rm", "ladder.rm", "rm", "RMStageConfig",
          "train a reward model on preference pairs (TRL RewardTrainer)", {"model": "sft", "data": "data"}),
    # DPO learns from the same pairs as the reward model, but trains the SFT model on them directly.
    Stage("dpo", "ladder.dpo", "dpo", "DPOStageConfig",
          "preference tuning on the pairs, no reward model (TRL DPOTrainer, LoRA)",
          {"model": "sft", "data": "data"}, writes_text=True, optional=True),
    Stage("ppo", "ladder.ppo", "ppo", "PPOStageConfig",
          "RLHF with ladder's PPO (critic, GAE, clipping, KL to reference)",
          {"model": "sft", "reward_model": "rm", "data": "data"}, writes_text=True, rl=True),
    # GRPO starts from SFT too, so the report compares PPO and GRPO from the same start.
    Stage("grpo", "ladder.grpo", "grpo", "GRPOStageConfig",
          "reasoning by practice on verifiable rewards (TRL GRPOTrainer, vLLM)",
          {"model": "sft", "data": "data"}, writes_text=True, rl=True),
    # RLOO: GRPO's prompts and rewards with the leave-one-out estimator, from the same SFT start.
    Stage("rloo", "ladder.rloo", "rloo", "RLOOStageConfig",
          "the same practice with REINFORCE leave-one-out (TRL RLOOTrainer, vLLM)",
          {"model": "sft", "data": "data"}, writes_text=True, rl=True, optional=True),
)
OUTPUTS = [s.output for s in STAGES]  # stage directories in ladder order
TEXT_OUTPUTS = [s.output for s in STAGES if s.writes_text]
RL_OUTPUTS = [s.output for s in STAGES if s.rl]

# (column, manifest metric, format): the numbers that say how a rung did, as the report card shows them;
# `ladder runs` shows those named in RUNS_COLUMNS.
METRICS = [("accuracy", "eval/accuracy", "{:.1%}"),
           ("no tools", "eval/accuracy_no_tools", "{:.1%}"), ("tool calls", "eval/tool_call_rate", "{:.1%}"),
           ("acc. (called)", "eval/accuracy_with_tool", "{:.1%}"),
           ("acc. (no call)", "eval/accuracy_without_tool", "{:.1%}"), ("format", "eval/format_rate", "{:.1%}"),
           ("RM score", "eval/rm_score", "{:+.2f}"), ("human", "eval/judge/human_style", "{:+.2f}"),
           ("length", "eval/mean_length", "{:.0f}"), ("thinking", "eval/think_length", "{:.0f}"),
           ("abstain", "eval/abstain_rate", "{:.1%}"), ("hallucination", "eval/hallucination_rate", "{:.1%}"),
           ("pass@1", "eval/pass@1", "{:.1%}"), ("pass@k", "eval/pass@k", "{:.1%}"),
           ("pairwise acc.", "pairwise_accuracy", "{:.1%}"), ("eval loss", "eval_loss", "{:.3f}"),
           ("time", "seconds", None)]
RUNS_COLUMNS = ("accuracy", "format", "RM score", "pairwise acc.", "eval loss")
# shown only when some rung abstains ("I don't know"): a ladder that never does gets no empty columns
ABSTAIN_COLUMNS = ("abstain", "hallucination")
# shown only when some rung was evaluated with tools (`ladder eval` on a checkpoint trained with them): accuracy
# without them, the share of answers that called one, accuracy among the answers that did and did not
TOOL_COLUMNS = ("no tools", "tool calls", "acc. (called)", "acc. (no call)")
# what says how a stage did, best first: held-out accuracy, else a reward model's pairwise accuracy, else eval loss
KEY_METRIC = ("accuracy", "pairwise_accuracy", "eval_loss")


def stage_metric(metrics: dict, name: str) -> tuple[str, float] | None:
    """(key, value) of the first number a stage's manifest holds for `name`: `ladder eval`'s (eval/<name>),
    else the stage's own held-out figure (<name>, as SFT records it; after/<name>, as the RL stages do after
    training). A stage run on its own, never evaluated, still has a number to show."""
    for key in (f"eval/{name}", name, f"after/{name}"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, value
    return None


def key_metric(metrics: dict) -> tuple[str, float] | None:
    """(key, value) of the one number that says how a stage did (KEY_METRIC, each as stage_metric finds it)."""
    return next(filter(None, (stage_metric(metrics, name) for name in KEY_METRIC)), None)


def run_stages(run) -> dict[str, Path]:
    """Finished stages of a run (directories with a manifest), in ladder order, other finished dirs after."""
    run = Path(run)
    found = {p.name: p for p in sorted(run.iterdir()) if (p / MANIFEST).is_file()} if run.is_dir() else {}
    return {**{s: found[s] for s in OUTPUTS if s in found}, **{k: v for k, v in found.items() if k not in OUTPUTS}}
