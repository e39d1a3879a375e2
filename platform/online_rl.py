"""What TRL's online RL stages (`ladder grpo`, `ladder rloo`) share: reward wrapping and watchdogs, the
held-out curve callback, vLLM context sizing, sample completions in TensorBoard, and the trainer
subclass with ladder's vLLM backend.

Both trainers sample `num_generations` completions per prompt, score them with the recipe's reward
functions and compare each completion with the others of its group; they differ in the advantage
(GRPO: group mean and std; RLOO: the mean of the other completions) and the loss (per token vs per
sequence). Everything around that, which a stage builds before and after `trainer.train()`, is here.
"""

from __future__ import annotations

import functools
import logging
import shutil
import warnings
from pathlib import Path

from transformers import TrainerCallback

from ladder.config import to_dict
from ladder.errors import LadderError
from ladder.evaluation import curve_point, heldout
from ladder.runtime import vllm_available

log = logging.getLogger("ladder.online_rl")

# What the RL stages optimise unless the recipe says otherwise: the built-in tasks' checkable answers
# (arithmetic and countdown) and a little for the <think>/<answer> format.
DEFAULT_REWARDS = [{"name": "math_accuracy", "weight": 1.0}, {"name": "countdown_accuracy", "weight": 1.0},
                   {"name": "format_reward", "weight": 0.2}]

# The default backend is "hf", from measurements on the 2-core CPU machine (bench/grpo_throughput.py):
# on CPU a GRPO step is dominated by the training forward/backward, so vLLM's faster sampling buys
# little per step. ~11M model, 8 prompts x 4 x 64 tokens: rollout 1,162 tokens/s (HF) vs 1,296 (vLLM,
# fp32 eager), step 5.1 vs 5.0 s, plus a 3 s engine start and a second copy of the weights; the tiny
# test run: 6 s (HF) vs 9 s. vLLM pays off with longer completions and bigger models (SmolLM2-135M,
# 32 x 128 tokens: 119 vs 238 tokens/s, docs/cpu-stack.md), and on GPUs. That holds in fp32. A CPU that trains
# in bf16 samples in bf16 too, and TRL's importance-sampling correction then costs one more forward, so there
# HF is the faster (SmolLM2 GRPO step 13.1 s against 17.6; in fp32 vLLM, 23.2 against 28.7: bench/RESULTS.md).
ROLLOUT_BACKENDS = ("hf", "vllm")


def choose_rollout_backend(cfg) -> None:
    """Check `rollout_backend` and set TRL's `use_vllm` from it (call in the config's __post_init__,
    before TRL's): one switch for the user, and HF generate with a warning where vLLM is missing."""
    if cfg.rollout_backend not in ROLLOUT_BACKENDS:
        raise LadderError(f"rollout_backend must be one of {', '.join(ROLLOUT_BACKENDS)}, "
                          f"got '{cfg.rollout_backend}'")
    if cfg.use_vllm and cfg.rollout_backend != "vllm":
        raise LadderError("use_vllm is set by ladder from rollout_backend: set rollout_backend: vllm instead")
    if cfg.rollout_backend == "vllm" and not vllm_available():
        warnings.warn("rollout_backend 'vllm' but vLLM is not installed: rolling out with HF generate "
                      "(pip install -e '.[cpu]' or '.[gpu]' for vLLM)")
        cfg.rollout_backend = "hf"
    cfg.use_vllm = cfg.rollout_backend == "vllm"


def check_rates(cfg) -> None:
    """Values TRL and torch only refuse once the model has loaded (generation config, optimizer): refused
    here, in the config's __post_init__, in one line. GRPO and RLOO sample, and divide logits by the
    temperature, so it must be above 0."""
    if not cfg.temperature > 0:
        raise LadderError(f"temperature must be > 0 (the policy samples its completions), got {cfg.temperature}")
    if not cfg.learning_rate >= 0:
        raise LadderError(f"learning_rate must be >= 0, got {cfg.learning_rate}")


# ---------------------------------------------------------------- watchdogs

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


def watch_constant(fn, num_generations: int, warn):
    """Wrap a reward so that, if it never varies inside any group, we say so once, by name."""
    seen = {"calls": 0, "spread": False}

    @functools.wraps(fn)
    def wrapper(completions, **kwargs):
        values = fn(completions, **kwargs)
        groups = [values[i:i + num_generations] for i in range(0, len(values), num_generations)]
        if any(len({v for v in g if v is not None}) > 1 for g in groups):
            seen["spread"] = True
        seen["calls"] += 1
        if seen["calls"] == 3 and not seen["spread"] and any(v is not None for v in values):
            warn(f"reward '{fn.__name__}' was constant within every group for 3 batches: it gives no "
                 "learning signal (zero advantage)")
        return values

    return wrapper


def watched_rewards(fns, num_generations: int, watch: WatchRollouts) -> list:
    """The recipe's reward functions, each wrapped by watch_constant, warning through `watch` (once each)."""
    return [watch_constant(f, num_generations, lambda m: watch._warn(m, m)) for f in fns]


# ---------------------------------------------------------------- held-out curve

class HeldoutCurve(TrainerCallback):
    """Greedy held-out accuracy every `every` steps (main process), for the learning curve.
    Not under ZeRO-3, where the main process alone cannot see whole weights."""

    def __init__(self, stage: str, tokenizer, rows, every: int, max_new_tokens: int, tools=None):
        self.stage, self.tokenizer, self.rows, self.every, self.points = stage, tokenizer, rows, every, []
        self.max_new_tokens, self.tools = max_new_tokens, tools

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps \
                and state.is_world_process_zero and model is not None \
                and not any(hasattr(p, "ds_id") for p in model.parameters()):
            stats = heldout(model, self.tokenizer, self.rows, max_new_tokens=self.max_new_tokens, tools=self.tools)
            self.points.append({"step": state.global_step, **curve_point(stats)})
            print(f"{self.stage}: step {state.global_step} held-out accuracy {stats['accuracy']:.3f}", flush=True)


# ---------------------------------------------------------------- vLLM

def longest_prompt(ds, tokenizer, tools=None) -> int:
    """Tokens in the longest prompt, chat template (and the tools it offers) included: sizes vLLM's context
    and KV cache (the model's max_position_embeddings would reserve far more than an RL stage ever uses)."""
    texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tools=tools or None, tokenize=False,
                                                                        add_generation_prompt=True)
             for p in ds["prompt"]]
    return max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def prepare_vllm(cfg, model, tokenizer, ds, resized: bool, tools=None) -> None:
    """Before the trainer builds its engine: size vLLM's context to the longest prompt plus a
    completion, and when chat tokens were added to the embeddings, give vLLM (which loads from disk)
    a checkpoint that has them, in output_dir/rollout-start (removed by close_vllm)."""
    if not cfg.use_vllm:
        return
    if cfg.vllm_max_model_length is None:
        cfg.vllm_max_model_length = min(longest_prompt(ds, tokenizer, tools) + cfg.max_completion_length + 8,
                                        model.config.max_position_embeddings)
    if resized:
        start = Path(cfg.output_dir) / "rollout-start"
        model.save_pretrained(start)
        tokenizer.save_pretrained(start)
        model.name_or_path = str(start)


def close_vllm(trainer, cfg) -> None:
    """After training: free an in-process engine's memory and process group (the next stage of `ladder
    run` may build its own), and remove the rollout-start copy."""
    if cfg.use_vllm and getattr(trainer.vllm_generation, "llm", None) is not None:
        from ladder.rollout import close_engine

        close_engine(trainer.vllm_generation.llm)
        trainer.vllm_generation.llm = None
    shutil.rmtree(Path(cfg.output_dir) / "rollout-start", ignore_errors=True)


# ---------------------------------------------------------------- the trainer

def trainer_class(trainer_module, name: str):
    """TRL's `trainer_module.<name>` (GRPOTrainer in trl.trainer.grpo_trainer, RLOOTrainer in
    trl.trainer.rloo_trainer) with ladder's vLLM backend, log-prob forwards without the batch's padding
    (ladder.padding) and sample completions in TensorBoard.
    Both modules build their engine as `VLLMGeneration(...)`, a name looked up in the module itself,
    which is what ladder.rollout.exact_vllm swaps while the trainer is built."""
    import torch

    from ladder import generation, padding, precision, rollout

    base = getattr(trainer_module, name)

    class Trainer(base):
        def __init__(self, *args, **kwargs):
            with rollout.exact_vllm(trainer_module):
                super().__init__(*args, **kwargs)

        def cast_once(self, enabled: bool):
            # bf16 weights cast once per rollout or scoring pass, not once per forward (ladder.precision)
            return precision.cast_once(self.args.bf16 and enabled, self.accelerator.device.type)

        def _generate_single_turn(self, *args, **kwargs):
            # TRL's HF generate runs without gradients, and samples by ladder.generation.draw_one; vLLM runs
            # in its own dtype, in this process
            with self.cast_once(not self.use_vllm), generation.cdf_sampling():
                return super()._generate_single_turn(*args, **kwargs)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **inputs):
            # the LM head projects only the completions' positions (ladder.padding); text only, no MoE aux
            # loss: the same log-probs from sorted, trimmed chunks
            if compute_aux_loss or any(v is not None for v in inputs.values()):
                with padding.scored_positions_only():
                    return super()._get_per_token_logps_and_entropies(
                        model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                        compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **inputs)
            chunk = super()._get_per_token_logps_and_entropies
            tokens = padding.chunk_tokens(self.accelerator.unwrap_model(model).config, input_ids.device)
            # the old / reference log-probs in bf16 weights cast once
            with self.cast_once(not torch.is_grad_enabled()), padding.scored_positions_only():
                return padding.by_length(lambda ids, mask, keep, **kw: chunk(model, ids, mask, keep, **kw),
                                         input_ids, attention_mask, logits_to_keep, compute_entropy=compute_entropy,
                                         tokens=tokens, rows=batch_size)

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            if self.accelerator.is_main_process and self.model.training:
                completions_to_tensorboard(self, rows=4)

    Trainer.__name__ = Trainer.__qualname__ = name
    return Trainer


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


# ---------------------------------------------------------------- what the manifest records

def reward_history(log_history: list[dict]) -> list[dict]:
    """Per logged step: the mean total reward, the mean completion length (tokens) and the seconds a
    training step took (TRL's `step_time`: sampling, scoring, forward and backward; not the held-out curve)."""
    def row(h: dict) -> dict:
        out = {"step": h["step"], "reward": h["reward"], "completion_length": h.get("completions/mean_length"),
               "step_time": h.get("step_time")}
        if h.get("tools/call_frequency") is not None:  # with tools: TRL's calls per completion
            out["tool_calls"] = h["tools/call_frequency"]
        return out

    return [row(h) for h in log_history if "reward" in h]


def training_metrics(result, history: list[dict], world_size: int) -> dict:
    """The numbers every online RL stage records about its training; `seconds_per_step` (the mean of
    the logged step times) lets the report compare stages run with different held-out curves."""
    times = [h["step_time"] for h in history if h.get("step_time") is not None]
    return {"train_loss": result.training_loss, "steps": result.global_step,
            "reward_first": history[0]["reward"] if history else None,
            "reward_last": history[-1]["reward"] if history else None,
            "seconds_per_step": round(sum(times) / len(times), 3) if times else None,
            "world_size": world_size}


# ---------------------------------------------------------------- the stage

def train_online(cfg, stage: str, trainer_cls) -> dict:
    """GRPO's and RLOO's stage, which differ only in their TRL trainer: prompts, rewards (and tools) checked
    before any model loads -> the policy -> held-out scores before -> training, watched -> held-out
    scores after -> HF checkpoint + manifest."""
    from ladder import checkpoint
    from ladder.checkpoint import last_checkpoint
    from ladder.data.loaders import load_split
    from ladder.distributed import unsharded, whole_weights
    from ladder.lora import lora_config
    from ladder.models import load_model, load_tokenizer
    from ladder.rewards import load_rewards, sample_batch, validate_rewards
    from ladder.runtime import check_engine, say_rank, seed_everything, setup_process
    from ladder.tools import load_tools

    setup_process()
    # ---- prompts, rewards and tools, checked before any model loads
    ds = load_split(cfg.data, "rl", cfg.train_split, name=cfg.data_name, transform=cfg.data_transform,
                    limit=cfg.max_train_samples)
    fns, weights = load_rewards(cfg.rewards)
    validate_rewards(fns, sample_batch(ds), where=cfg.data)
    cfg.reward_weights = weights
    tools = load_tools(getattr(cfg, "tools", None) or [])
    tokenizer, resized = load_tokenizer(cfg.model, tools=bool(tools))
    test_rows = list(load_split(cfg.data, "rl", cfg.test_split, name=cfg.data_name, transform=cfg.data_transform,
                                limit=cfg.eval_samples)) if cfg.test_split and cfg.eval_samples else []
    # ---- the policy (LoRA's initial weights and embeddings grown for chat tokens come from torch's RNG)
    seed_everything(cfg.seed)
    model = load_model(cfg, tokenizer, resized)
    prepare_vllm(cfg, model, tokenizer, ds, resized, tools)  # context size; a checkpoint with added chat tokens
    metrics = {}
    if test_rows:
        with whole_weights(model):
            before = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_completion_length,
                             tools=tools or None)
            metrics.update({f"before/{k}": v for k, v in before.items()})
    # ---- training, watched
    watch = WatchRollouts()
    fns = watched_rewards(fns, cfg.num_generations, watch)
    curve = HeldoutCurve(stage, tokenizer, test_rows, cfg.heldout_every if test_rows else 0,
                         cfg.max_completion_length, tools or None)
    extra = {"tools": tools} if tools else {}  # GRPOTrainer runs the tool loop; RLOOTrainer has none
    trainer = trainer_cls(model=model, reward_funcs=fns, args=cfg, train_dataset=ds, processing_class=tokenizer,
                          callbacks=[watch, curve], peft_config=lora_config(cfg), **extra)
    check_engine(trainer.accelerator)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg.output_dir) if cfg.resume else None)
    history = reward_history(trainer.state.log_history)
    metrics.update(training_metrics(result, history, trainer.accelerator.num_processes))
    say_rank(stage, trainer.accelerator, result.global_step)
    # ---- held-out scores after, and the checkpoint
    model = unsharded(trainer)  # all ranks: a collective under ZeRO-3
    if trainer.accelerator.is_main_process:
        model = model.merge_and_unload() if cfg.use_lora else model
        if test_rows:
            after = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_completion_length,
                            tools=tools or None)
            metrics.update({f"after/{k}": v for k, v in after.items()})
        checkpoint.export(cfg.output_dir, model, tokenizer, stage=stage, parent=cfg.model, config=to_dict(cfg),
                          metrics=metrics, history=history + curve.points)
        print(f"{stage}: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    close_vllm(trainer, cfg)  # free the engine's memory and process group before returning
    return metrics
