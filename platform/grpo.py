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

from dataclasses import dataclass, field

from trl import GRPOConfig

from ladder.config import check_generation_groups, load_config, option, to_dict
from ladder.data.loaders import DataOptions
from ladder.evaluation import heldout
from ladder.lora import LoraOptions, lora_config
from ladder.online_rl import (DEFAULT_REWARDS, HeldoutCurve, WatchRollouts, choose_rollout_backend, close_vllm,
                              prepare_vllm, reward_history, training_metrics, watched_rewards)
from ladder.runtime import check_engine, cpu_training_defaults, has_cuda, say_rank, seed_everything, setup_process


@dataclass
class GRPOStageConfig(DataOptions, LoraOptions, GRPOConfig):
    # ladder's own options; every GRPOConfig option passes through from the recipe as well
    model: str = option("runs/tiny/sft", "the model to start from (a dir or hub id), usually the SFT rung")
    rewards: list = option(factory=lambda: list(DEFAULT_REWARDS),
                           help="reward functions: built-in names, module:fn or file.py:fn, each with a weight")
    rollout_backend: str = option("hf", "hf: transformers generate; vllm: ladder.rollout (exact weight sync on CPU)")
    # None: off on CPU, where ladder's vLLM sync is exact (the correction would be a ratio of 1 that
    # costs one more forward per step); TRL's default (on) with CUDA vLLM, which samples in bf16.
    vllm_importance_sampling_correction: bool | None = option(
        None, "correct for vLLM sampling another policy than the trainer's (default: on with CUDA, off on CPU)")
    eval_samples: int = option(200, "held-out prompts scored greedily before and after training")
    heldout_every: int = option(0, "also every this many steps (0: never): the curve in the manifest's history")
    resume: bool = option(False, "continue from the newest complete Trainer checkpoint in output_dir")
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
        choose_rollout_backend(self)
        if self.vllm_importance_sampling_correction is None:
            self.vllm_importance_sampling_correction = has_cuda()
        check_generation_groups(self)  # before TRL's own check, in ladder's words
        super().__post_init__()


def trainer_class():
    """TRL's GRPOTrainer with ladder's vLLM backend (ladder.rollout) and sample completions in TensorBoard."""
    import trl.trainer.grpo_trainer as grpo_trainer

    from ladder import online_rl

    return online_rl.trainer_class(grpo_trainer, "GRPOTrainer")


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
    prepare_vllm(cfg, model, tokenizer, ds, resized)  # context size; a checkpoint with added chat tokens
    metrics = {}
    if test_rows:
        with whole_weights(model):
            before = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_completion_length)
            metrics.update({f"before/{k}": v for k, v in before.items()})
    watch = WatchRollouts()
    fns = watched_rewards(fns, cfg.num_generations, watch)
    curve = HeldoutCurve("grpo", tokenizer, test_rows, cfg.heldout_every if test_rows else 0,
                         cfg.max_completion_length)
    trainer = trainer_class()(model=model, reward_funcs=fns, args=cfg, train_dataset=ds, processing_class=tokenizer,
                              callbacks=[watch, curve], peft_config=lora_config(cfg))
    check_engine(trainer.accelerator)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg.output_dir) if cfg.resume else None)
    history = reward_history(trainer.state.log_history)
    metrics.update(training_metrics(result, history, trainer.accelerator.num_processes))
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
    close_vllm(trainer, cfg)  # free the engine's memory and process group before returning
    return metrics


def main(argv=None) -> int:
    train(load_config(GRPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
