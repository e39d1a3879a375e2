"""`ladder sft`: teach a base model to chat (TRL SFTTrainer; LoRA/QLoRA through peft).

    accelerate launch -m ladder.sft --config recipes/tiny/sft.yaml
    ladder sft --config recipes/tiny/sft.yaml --use_lora true

Reads like the recipe: config -> chat data (any common layout, every row checked) -> model and
tokenizer (ours has a chat template with generation markers; a tokenizer without a template gets
ours) -> SFTTrainer with loss on assistant tokens only -> merged HF checkpoint + manifest with
held-out loss and greedy held-out scores (ladder.evaluation.heldout, as every stage records them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from ladder.checkpoint import last_checkpoint
from ladder.config import load_config, option, to_dict
from ladder.data.chat import prompt_of
from ladder.data.loaders import DataOptions, held_out_source
from ladder.distributed import unsharded
from ladder.errors import LadderError
from ladder.evaluation import heldout
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.models import load_model, load_tokenizer, plain_model
from ladder.runtime import check_engine, cpu_training_defaults, say_rank, seed_everything, setup_process


@dataclass
class SFTStageConfig(DataOptions, LoraOptions, SFTConfig):
    # ladder's own options; every SFTConfig option passes through from the recipe as well
    model: str = option("runs/tiny/base", "the base model to start from (a dir or hub id)")
    test_data: str | None = option(None, "held-out chats from elsewhere (default: data's test_split; a file has none)")
    eval_samples: int = option(64, "held-out prompts answered greedily after training (format rate, accuracy)")
    max_new_tokens: int = option(128, "length of those answers")
    merge_lora: bool = option(True, "save a plain model, so later stages and vLLM load it directly")
    tools: list = option(factory=list, help="tools the chats call (built-in names, module:fn or file.py:fn): offered "
                                            "in every prompt, calls and results rendered by the chat template")
    resume: bool = option(False, "continue from the newest complete Trainer checkpoint in output_dir")
    # defaults for the tiny ladder (a recipe can change any of them)
    output_dir: str = "runs/tiny/sft"
    assistant_only_loss: bool = True
    num_train_epochs: float = 2.0
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
        check_steps(self)
        super().__post_init__()


def check_steps(cfg) -> None:
    """What the Trainer would accept and then not train (a finished checkpoint saved from zero steps, or
    torch's late 'Invalid learning rate'): refused before anything loads. transformers counts steps from
    num_train_epochs only when max_steps is negative (-1, the default); max_steps 0 is 0 steps."""
    if cfg.max_steps == 0 or (cfg.max_steps < 0 and cfg.num_train_epochs <= 0):
        raise LadderError(f"no training steps (num_train_epochs={cfg.num_train_epochs:g}, max_steps={cfg.max_steps}): "
                          "set num_train_epochs > 0 with max_steps -1 (the default), or max_steps > 0")
    if not cfg.learning_rate >= 0:
        raise LadderError(f"learning_rate must be >= 0, got {cfg.learning_rate}")


def load_chats(source: str, split: str, cfg: SFTStageConfig, tokenizer, limit=None, tools=()):
    """(chats as `messages`, every row checked, with the tools on offer as TRL's `tools` column; the raw
    rows, whose `answer` column the generation check uses)."""
    from ladder.data.chat import check_lengths, check_tools_offered, to_messages
    from ladder.data.loaders import load_split
    from ladder.tools import tool_schemas

    raw = load_split(source, "sft", split, name=cfg.data_name, transform=cfg.data_transform, limit=limit)
    where = f"{source}[{split}]"
    ds = to_messages(raw, where)
    check_tools_offered(ds, [fn.__name__ for fn in tools], where)
    if tools:
        ds = ds.add_column("tools", [tool_schemas(tools)] * len(ds))
    check_lengths(ds, tokenizer, cfg.max_length, where, tools=list(tools))
    return ds, raw


def trl_can_mask(tokenizer) -> bool:
    """Can TRL find the assistant's tokens in this chat template (its own markers, or a patched
    version TRL ships for well-known templates)?"""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        get_training_chat_template(tokenizer)  # None (fine as is), a patched template, or ValueError
        return True
    except ValueError:
        return False


def loss_on_answers(cfg: SFTStageConfig, tokenizer, train_ds, test_ds=None):
    """Keep the loss on assistant tokens whatever the template. Ours (and those TRL knows) mark the
    assistant's tokens, so TRL masks everything else. A foreign template without markers: each chat
    becomes prompt + last assistant answer, and TRL's completion-only loss does the same job."""
    from ladder.data.chat import to_prompt_completion

    if not cfg.assistant_only_loss or trl_can_mask(tokenizer):
        return train_ds, test_ds
    print(f"sft: {cfg.model}'s chat template has no {{% generation %}} markers; "
          "training on the last assistant turn of each chat")
    cfg.assistant_only_loss, cfg.completion_only_loss = False, True
    return to_prompt_completion(train_ds), to_prompt_completion(test_ds) if test_ds is not None else None


def train(cfg: SFTStageConfig) -> dict:
    setup_process()
    if cfg.load_in_4bit:
        check_qlora()
    from trl import SFTTrainer

    from ladder import checkpoint, padding

    from ladder.tools import load_tools

    tools = load_tools(cfg.tools)  # each checked with a sample call, before anything loads
    tokenizer, resized = load_tokenizer(cfg.model, tools=bool(tools))
    train_ds, _ = load_chats(cfg.data, cfg.train_split, cfg, tokenizer, cfg.max_train_samples, tools)
    test_ds, heldout_rows = None, []
    source = held_out_source(cfg.data, cfg.test_data, cfg.test_split)
    if source:
        test_ds, raw = load_chats(source, cfg.test_split or "test", cfg, tokenizer, tools=tools)
        if "answer" in raw.column_names:  # held-out problems with a gold answer: score greedy answers too
            heldout_rows = [{"prompt": prompt_of(c), "answer": a} for c, a in zip(test_ds["messages"], raw["answer"])
                            if a not in (None, "")][:cfg.eval_samples]
    train_ds, test_ds = loss_on_answers(cfg, tokenizer, train_ds, test_ds)
    seed_everything(cfg.seed)  # LoRA's A matrices (and embeddings grown for chat tokens) are drawn from torch's RNG
    model = load_model(cfg, tokenizer, resized)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=test_ds,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    check_engine(trainer.accelerator)
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    with padding.scored_positions_only():  # TRL's LM head over the answers' tokens alone, on a CPU too
        result = trainer.train(resume_from_checkpoint=resume)
        metrics = {"train_loss": result.training_loss, "steps": result.global_step,
                   "samples_per_second": result.metrics.get("train_samples_per_second")}
        if test_ds is not None:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]

    metrics["world_size"] = trainer.accelerator.num_processes
    say_rank("sft", trainer.accelerator, result.global_step)
    model = unsharded(trainer)  # all ranks: a collective under ZeRO-3
    if trainer.accelerator.is_main_process:
        model = plain_model(model, cfg, tokenizer, resized)
        if heldout_rows:
            metrics.update(heldout(model, tokenizer, heldout_rows, max_new_tokens=cfg.max_new_tokens,
                                   tools=tools or None))
        checkpoint.export(cfg.output_dir, model, tokenizer, stage="sft", parent=cfg.model,
                          config=to_dict(cfg), metrics=metrics)
        print(f"sft: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    return metrics


def main(argv=None) -> int:
    train(load_config(SFTStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
