"""`ladder rloo`: practice on problems with checkable answers, REINFORCE Leave-One-Out (TRL RLOOTrainer).

    accelerate launch -m ladder.rloo --config recipes/tiny/rloo.yaml

The same rung as `ladder grpo`, on the same RL prompts and reward functions, with another estimator:
each prompt's `num_generations` completions are scored, and a completion's advantage is its reward
minus the mean reward of the *other* completions of its group (no division by the group's spread);
the loss is REINFORCE on the whole sequence's log-probability (GRPO's is per token), clipped as in PPO
when a batch is reused (num_iterations > 1). A KL penalty to the start model, if `beta` > 0, is taken
off the reward itself (Ahmadian et al. 2024), not added to the loss.

Config -> RL prompts -> reward functions from the recipe, each loaded and called once on a sample batch
before any model loads -> RLOOTrainer with rollouts from HF generate, or from vLLM (`rollout_backend:
vllm`; on CPU through ladder.rollout: fp32, eager, in-process, exact weight sync; RLOOTrainer builds its
engine by the module-level name `VLLMGeneration`, as GRPOTrainer does, so ladder.rollout.exact_vllm
serves both) -> HF checkpoint + manifest with held-out accuracy before and after, the reward and
completion length per logged step, and seconds per step.
RLOOTrainer asks vLLM for no log-probs and has no importance-sampling correction: with CUDA vLLM
(bf16, and a CPU training in bf16: ladder.precision) the samples come from a slightly different policy
than the one trained, uncorrected; on CPU in fp32 ladder's sync is exact, so sampler and trainer are the
same function. (HF rollouts run in the trainer's own autocast: the same function in either precision.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RLOOConfig

from ladder.config import check_generation_groups, load_config, option
from ladder.data.loaders import DataOptions
from ladder.lora import LoraOptions
from ladder.online_rl import DEFAULT_REWARDS, check_rates, choose_rollout_backend, train_online
from ladder.runtime import cpu_training_defaults


@dataclass
class RLOOStageConfig(DataOptions, LoraOptions, RLOOConfig):
    # ladder's own options; every RLOOConfig option passes through from the recipe as well
    model: str = option("runs/tiny/sft", "the model to start from (a dir or hub id), usually the SFT rung")
    rewards: list = option(factory=lambda: list(DEFAULT_REWARDS),
                           help="reward functions: built-in names, module:fn or file.py:fn, each with a weight")
    rollout_backend: str = option("hf", "hf: transformers generate; vllm: ladder.rollout (exact weight sync on CPU)")
    eval_samples: int = option(200, "held-out prompts scored greedily before and after training")
    heldout_every: int = option(0, "also every this many steps (0: never): the curve in the manifest's history")
    resume: bool = option(False, "continue from the newest complete Trainer checkpoint in output_dir")
    # defaults for the tiny ladder (recipes/tiny/rloo.yaml sets the rung's own)
    output_dir: str = "runs/tiny/rloo"
    max_steps: int = 20
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 32  # completions per step (prompts x num_generations), as in GRPO
    num_generations: int = 8
    max_completion_length: int = 64
    temperature: float = 1.0
    # TRL's default is 0.05, which keeps a second copy of the model as the reference and runs it on every
    # batch; ladder's GRPO trains without KL too, so on the same recipe the two differ in the estimator only.
    beta: float = 0.0
    # Dropout off while training (TRL's default leaves it on): the loss's log-probs then come from the
    # function that sampled instead of a randomly thinned one.
    disable_dropout: bool = True
    # Cut completions stay in the loss with the reward their unfinished text gets, as in ladder's GRPO
    # (grpo.py says what leaving them out did on the tiny ladder).
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
        check_rates(self)
        check_generation_groups(self)  # before TRL's own check, in ladder's words
        super().__post_init__()


def trainer_class():
    """TRL's RLOOTrainer with ladder's vLLM backend (ladder.rollout) and sample completions in TensorBoard."""
    import trl.trainer.rloo_trainer as rloo_trainer

    from ladder import online_rl

    return online_rl.trainer_class(rloo_trainer, "RLOOTrainer")


def train(cfg: RLOOStageConfig) -> dict:
    return train_online(cfg, "rloo", trainer_class())


def main(argv=None) -> int:
    train(load_config(RLOOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
