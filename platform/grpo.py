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
With `tools`, a rollout is multi-turn (TRL's tool loop): the policy calls a tool, ladder runs it (python in
the sandbox, never in this process), the result joins the conversation and the policy goes on; the loss
covers the policy's own tokens only (a tool's output is masked: tests/test_tools_rl.py), the rewards read
its last assistant message, and the tool-call rate is logged per step and scored on held-out problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from ladder.config import check_generation_groups, load_config, option
from ladder.data.loaders import DataOptions
from ladder.lora import LoraOptions
from ladder.online_rl import DEFAULT_REWARDS, check_rates, choose_rollout_backend, train_online
from ladder.runtime import cpu_training_defaults, has_cuda


@dataclass
class GRPOStageConfig(DataOptions, LoraOptions, GRPOConfig):
    # ladder's own options; every GRPOConfig option passes through from the recipe as well
    model: str = option("runs/tiny/sft", "the model to start from (a dir or hub id), usually the SFT rung")
    rewards: list = option(factory=lambda: list(DEFAULT_REWARDS),
                           help="reward functions: built-in names, module:fn or file.py:fn, each with a weight")
    rollout_backend: str = option("hf", "hf: transformers generate; vllm: ladder.rollout (exact weight sync on CPU)")
    tools: list = option(factory=list, help="tools the policy may call in its rollouts (built-in: calculator, python; "
                                            "module:fn or file.py:fn), each checked with a sample call")
    # None: off on CPU in fp32, where ladder's vLLM sync is exact (the correction would be a ratio of 1 that
    # costs one more forward per step); on where vLLM samples in bf16 (CUDA; a CPU training in bf16), where
    # the sampler is no longer exactly the policy: TRL then logs the gap (sampling/sampling_logp_difference).
    vllm_importance_sampling_correction: bool | None = option(
        None, "correct for vLLM sampling another policy than the trainer's (default: on with CUDA or bf16)")
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
    max_tool_calling_iterations: int | None = 3  # TRL's default has no limit: a policy that calls forever
    logging_steps: int = 5
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int | None = 1
    report_to: list[str] | str | None = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self):
        cpu_training_defaults(self)
        self.check_lora()
        choose_rollout_backend(self)
        check_rates(self)
        if self.vllm_importance_sampling_correction is None:
            self.vllm_importance_sampling_correction = has_cuda() or bool(self.bf16)
        check_generation_groups(self)  # before TRL's own check, in ladder's words
        super().__post_init__()


def trainer_class():
    """TRL's GRPOTrainer with ladder's vLLM backend (ladder.rollout) and sample completions in TensorBoard."""
    import trl.trainer.grpo_trainer as grpo_trainer

    from ladder import online_rl

    return online_rl.trainer_class(grpo_trainer, "GRPOTrainer")


def train(cfg: GRPOStageConfig) -> dict:
    return train_online(cfg, "grpo", trainer_class())


def main(argv=None) -> int:
    train(load_config(GRPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
