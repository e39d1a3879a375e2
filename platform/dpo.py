"""`ladder dpo`: learn human preferences straight from the pairs, without a reward model (TRL DPOTrainer).

    accelerate launch -m ladder.dpo --config recipes/tiny/dpo.yaml

Direct Preference Optimization trains the policy itself on the preference pairs the reward model
learns from (`prefs`): the chosen answer is made more likely than the rejected one, relative to a
frozen reference, the SFT model it starts from (with LoRA, the same model with its adapter switched
off, as TRL does). No reward model and no sampling: a supervised loss over pairs.

Reads like the recipe: config -> pairs (every row checked) -> SFT model and its reference ->
DPOTrainer -> merged HF checkpoint + manifest with, before and after training, what the held-out
pairs say (log-prob margin of chosen over rejected, the share of pairs the policy prefers the right
way; after: DPO's implicit reward margin) and greedy held-out answers (ladder.evaluation.heldout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trl import DPOConfig

from ladder.checkpoint import last_checkpoint
from ladder.config import load_config, option, to_dict
from ladder.data.loaders import DataOptions, held_out_source, load_split
from ladder.data.prefs import load_pairs
from ladder.distributed import unsharded, whole_weights
from ladder.evaluation import heldout, load_judges, mean_se
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.models import load_model, load_tokenizer, plain_model
from ladder.runtime import check_engine, cpu_training_defaults, say_rank, seed_everything, setup_process


@dataclass
class DPOStageConfig(DataOptions, LoraOptions, DPOConfig):
    # ladder's own options; every DPOConfig option passes through from the recipe as well
    model: str = option("runs/tiny/sft", "the model to start from, and (frozen) its reference (a dir or hub id)")
    test_data: str | None = option(None, "held-out pairs from elsewhere (default: data's test_split; a file has none)")
    eval_pairs: int | None = option(200, "held-out pairs scored before and after training (null: all)")
    # only a folder made by `ladder data` has problems with gold answers next to its pairs
    eval_samples: int = option(200, "held-out problems of data's `rl` test split answered greedily before and "
                                    "after (accuracy, format, judges; 0: none)")
    max_new_tokens: int = option(96, "length of those answers")
    judge: list[str] = option(factory=list, help="functions scored on those answers for evaluation only, never a "
                                                 "loss (e.g. ladder.data.human:human_style, the tiny ladder's hidden "
                                                 "human): did DPO learn the taste that labelled the pairs?")
    merge_lora: bool = option(True, "save a plain model, so later stages and vLLM load it directly")
    resume: bool = option(False, "continue from the newest complete Trainer checkpoint in output_dir")
    # defaults for the tiny ladder (recipes/tiny/dpo.yaml says why)
    output_dir: str = "runs/tiny/dpo"
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 16
    learning_rate: float = 1e-4
    beta: float = 0.1
    # DPO's loss plus an NLL term on the chosen answers (RPO): plain DPO on the tiny ladder pushed the
    # chosen answers' likelihood down along with the rejected ones', until the answers lost their format
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid", "sft"])
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
        if isinstance(self.judge, str):
            self.judge = [self.judge]
        super().__post_init__()


def answer_logps(model, pairs, collator, batch_size: int) -> tuple[list[float], list[float]]:
    """Log-probability of each pair's chosen and rejected answer given its prompt (summed over the answer's
    tokens), on TRL's own tokenisation of the pairs: its collator stacks the chosen rows, then the rejected."""
    import torch

    device = next(model.parameters()).device
    chosen, rejected = [], []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(pairs), batch_size):
            batch = collator([pairs[j] for j in range(i, min(i + batch_size, len(pairs)))])
            ids = batch["input_ids"].to(device)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=batch["attention_mask"].to(device)).logits[:, :-1]
            token = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            seq = (token * batch["completion_mask"][:, 1:].to(device)).sum(-1).tolist()
            half = len(seq) // 2
            chosen += seq[:half]
            rejected += seq[half:]
    finally:
        model.train(was_training)
    return chosen, rejected


def pair_metrics(chosen: list[float], rejected: list[float]) -> dict:
    """What the held-out pairs say about a policy: mean log-probs, the mean margin of chosen over rejected
    (and its standard error), and the share of pairs where the chosen answer is the likelier one."""
    margins = [c - r for c, r in zip(chosen, rejected)]
    margin, se = mean_se(margins)
    return {"logp_chosen": sum(chosen) / len(chosen), "logp_rejected": sum(rejected) / len(rejected),
            "logp_margin": margin, "logp_margin_se": se, "pref_accuracy": sum(m > 0 for m in margins) / len(margins),
            "pairs": len(margins)}


def implicit_rewards(beta: float, start: tuple, end: tuple) -> dict:
    """DPO's implicit reward margin, beta * (log-ratio of chosen - log-ratio of rejected) against the start
    model (the reference), and the share of pairs it ranks the right way. Zero before training by
    construction, hence only recorded after."""
    rewards = [beta * ((c1 - c0) - (r1 - r0)) for c0, r0, c1, r1 in zip(*start, *end)]
    return {"reward_margin": sum(rewards) / len(rewards), "reward_accuracy": sum(r > 0 for r in rewards) / len(rewards)}


def train(cfg: DPOStageConfig) -> dict:
    setup_process()
    if cfg.load_in_4bit:
        check_qlora()
    from trl import DPOTrainer

    from ladder import checkpoint, padding

    judges = load_judges(cfg.judge)  # a judge that does not load fails here, before any model
    tokenizer, resized = load_tokenizer(cfg.model)
    train_ds = load_pairs(cfg.data, cfg.train_split, cfg, cfg.max_train_samples)
    source = held_out_source(cfg.data, cfg.test_data, cfg.test_split)
    test_ds = load_pairs(source, cfg.test_split or "test", cfg, cfg.eval_pairs) if source else None
    test_rows = list(load_split(cfg.data, "rl", cfg.test_split, limit=cfg.eval_samples)) \
        if cfg.eval_samples and cfg.test_split and Path(cfg.data).is_dir() else []

    def start_model():
        # LoRA's A matrices and embeddings grown for chat tokens are drawn from torch's RNG: seeded, a run
        # is repeatable, and the reference draws exactly what the policy drew
        seed_everything(cfg.seed)
        return load_model(cfg, tokenizer, resized)

    # The reference is the start model, frozen: with LoRA TRL switches the adapter off instead, and with
    # precompute_ref_log_probs it scores the pairs with the policy before training. Otherwise a second copy,
    # loaded like the policy (TRL's own would be read from the path, without the chat tokens added above).
    ref = None if cfg.use_lora or cfg.precompute_ref_log_probs else start_model()
    model = start_model()
    trainer = DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=train_ds, eval_dataset=test_ds,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    check_engine(trainer.accelerator)
    pairs, batch = trainer.eval_dataset, cfg.per_device_eval_batch_size  # the held-out pairs, as TRL tokenised them
    metrics, start = {}, None
    with whole_weights(trainer.model):  # all ranks: under ZeRO-3 the weights are partitioned from the load on
        if pairs is not None:
            start = answer_logps(trainer.model, pairs, trainer.data_collator, batch)
            metrics.update({f"before/{k}": v for k, v in pair_metrics(*start).items()})
        if test_rows:
            before = heldout(trainer.model, tokenizer, test_rows, max_new_tokens=cfg.max_new_tokens, judges=judges)
            metrics.update({f"before/{k}": v for k, v in before.items()})
    with padding.scored_positions_only():  # TRL's LM head over the answers' tokens alone, on a CPU too
        result = trainer.train(resume_from_checkpoint=last_checkpoint(cfg.output_dir) if cfg.resume else None)
    metrics.update({"train_loss": result.training_loss, "steps": result.global_step,
                    "samples_per_second": result.metrics.get("train_samples_per_second"),
                    "world_size": trainer.accelerator.num_processes})
    say_rank("dpo", trainer.accelerator, result.global_step)
    model = unsharded(trainer)  # all ranks: a collective under ZeRO-3
    if trainer.accelerator.is_main_process:
        model = plain_model(model, cfg, tokenizer, resized)
        if pairs is not None:  # the model being saved
            end = answer_logps(model, pairs, trainer.data_collator, batch)
            metrics.update({f"after/{k}": v for k, v in pair_metrics(*end).items()})
            metrics.update({f"after/{k}": v for k, v in implicit_rewards(cfg.beta, start, end).items()})
        if test_rows:
            after = heldout(model, tokenizer, test_rows, max_new_tokens=cfg.max_new_tokens, judges=judges)
            metrics.update({f"after/{k}": v for k, v in after.items()})
        checkpoint.export(cfg.output_dir, model, tokenizer, stage="dpo", parent=cfg.model,
                          config=to_dict(cfg), metrics=metrics)
        print(f"dpo: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    return metrics


def main(argv=None) -> int:
    train(load_config(DPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
