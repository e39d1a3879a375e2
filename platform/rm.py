"""`ladder rm`: learn human preferences as a scalar reward model (TRL RewardTrainer).

    accelerate launch -m ladder.rm --config recipes/tiny/rm.yaml

Preference pairs (`chosen`/`rejected`, chat or plain text, with or without a shared `prompt`)
train an AutoModelForSequenceClassification head with one label, initialised from the SFT model.
Later stages (PPO, eval, the app) read the result through `ladder.models.score`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig

from ladder.config import load_config, option, to_dict
from ladder.data.loaders import DataOptions
from ladder.data.prefs import load_pairs
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.models import score_with
from ladder.runtime import check_engine, cpu_training_defaults, say_rank, seed_everything, setup_process


@dataclass
class RMStageConfig(DataOptions, LoraOptions, RewardConfig):
    model: str = option("runs/tiny/sft", "the model the reward model starts from (usually the SFT checkpoint)")
    test_data: str | None = option(None, "held-out pairs from elsewhere (default: data's test_split; a file has none)")
    resume: bool = option(False, "continue from the newest complete Trainer checkpoint in output_dir")
    # defaults for the tiny ladder
    output_dir: str = "runs/tiny/rm"
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 16
    learning_rate: float = 5e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = option(0.05, "share of the steps with a linear learning-rate warm-up")
    max_length: int | None = 256
    gradient_checkpointing: bool = False  # TRL turns it on; for small models it only costs time
    logging_steps: int = 10
    save_strategy: str = "steps"
    save_steps: int = 200
    save_total_limit: int | None = 1
    report_to: list[str] | str | None = field(default_factory=lambda: ["tensorboard"])
    eval_strategy: str = "no"

    def __post_init__(self):
        cpu_training_defaults(self)
        self.check_lora()
        super().__post_init__()


def pairwise_accuracy(model, tokenizer, ds) -> float:
    """Share of held-out pairs where the chosen answer outscores the rejected one."""
    prompts = ds["prompt"] if "prompt" in ds.column_names else [""] * len(ds)
    chosen = score_with(model, tokenizer, prompts, ds["chosen"])
    rejected = score_with(model, tokenizer, prompts, ds["rejected"])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(ds)


def train(cfg: RMStageConfig) -> dict:
    setup_process()
    if cfg.load_in_4bit:
        check_qlora()
    from transformers import AutoModelForSequenceClassification
    from trl import RewardTrainer

    from ladder import checkpoint
    from ladder.checkpoint import last_checkpoint
    from ladder.data.loaders import held_out_source
    from ladder.distributed import unsharded
    from ladder.models import load_model, load_reward_model, load_tokenizer, plain_model

    tokenizer, resized = load_tokenizer(cfg.model)
    train_ds = load_pairs(cfg.data, cfg.train_split, cfg, cfg.max_train_samples)
    source = held_out_source(cfg.data, cfg.test_data, cfg.test_split)
    test_ds = load_pairs(source, cfg.test_split or "test", cfg) if source else None
    # one output: a scalar reward read at the last non-pad token (hence pad_token_id in the config).
    # The new score head is drawn from torch's RNG before the Trainer seeds it: seed first, or two runs
    # of the same recipe (and a killed run resumed, against one never stopped) end with different weights.
    seed_everything(cfg.seed)
    model = load_model(cfg, tokenizer, resized, AutoModelForSequenceClassification, num_labels=1)
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=train_ds, processing_class=tokenizer,
                            peft_config=lora_config(cfg, "SEQ_CLS"))
    check_engine(trainer.accelerator)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg.output_dir) if cfg.resume else None)
    metrics = {"train_loss": result.training_loss, "steps": result.global_step,
               "world_size": trainer.accelerator.num_processes}
    say_rank("rm", trainer.accelerator, result.global_step)
    model = unsharded(trainer)  # all ranks: a collective under ZeRO-3
    if trainer.accelerator.is_main_process:
        model = plain_model(model, cfg, tokenizer, resized, AutoModelForSequenceClassification, num_labels=1)
        if test_ds is not None:  # the model being saved, scored exactly as score() will read it
            metrics["pairwise_accuracy"] = pairwise_accuracy(model, tokenizer, test_ds)
        checkpoint.export(cfg.output_dir, model, tokenizer, stage="rm", parent=cfg.model,
                          config=to_dict(cfg), metrics=metrics)
        load_reward_model.cache_clear()  # a cached older model at this path is stale now
        print(f"rm: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    return metrics


def main(argv=None) -> int:
    train(load_config(RMStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
