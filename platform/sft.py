"""`ladder sft`: teach a base model to chat (TRL SFTTrainer; LoRA/QLoRA through peft).

    accelerate launch -m ladder.sft --config recipes/tiny/sft.yaml
    ladder sft --config recipes/tiny/sft.yaml --use_lora true

Reads like the recipe: config -> chat data (any common layout, every row checked) -> model and
tokenizer (ours has a chat template with generation markers; a foreign one without a template
gets ours) -> SFTTrainer with loss on assistant tokens only -> merged HF checkpoint + manifest
with held-out loss, format rate and accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from ladder.config import load_config, to_dict
from ladder.errors import LadderError
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.runtime import cpu_training_defaults, setup_process


@dataclass
class SFTStageConfig(LoraOptions, SFTConfig):
    # ladder's own options; every SFTConfig option passes through from the recipe as well
    model: str = "runs/tiny/base"
    data: str = "runs/tiny/data"  # built-in data dir, a chat file (.jsonl/.parquet...), or a hub id
    data_name: str | None = None  # hub dataset config name
    train_split: str = "train"
    test_split: str | None = "test"  # held-out chat data for eval loss and the generation check
    max_train_samples: int | None = None
    eval_samples: int = 64  # held-out prompts answered greedily after training (format rate, accuracy)
    merge_lora: bool = True  # save a plain model, so later stages and vLLM load it directly
    resume: bool = False
    # defaults for the tiny ladder (a recipe can change any of them)
    output_dir: str = "runs/tiny/sft"
    assistant_only_loss: bool = True
    num_train_epochs: float = 2.0
    per_device_train_batch_size: int = 16
    learning_rate: float = 5e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    max_length: int | None = 256
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


def load_tokenizer(path: str):
    """The checkpoint's tokenizer; one without a chat template gets ours (returns it, changed?)."""
    from transformers import AutoTokenizer

    from ladder.pretrain.tokenizer import ensure_chat_template

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise LadderError(f"model '{path}': cannot load its tokenizer ({str(e).splitlines()[0][:160]})") from None
    changed = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, changed


def load_chat_split(cfg: SFTStageConfig, split: str, tokenizer, limit=None):
    from ladder.data.chat import check_lengths, to_messages
    from ladder.data.loaders import load_split

    ds = load_split(cfg.data, "sft", split, name=cfg.data_name, limit=limit)
    where = f"{cfg.data}[{split}]"
    ds = to_messages(ds, where)
    check_lengths(ds, tokenizer, cfg.max_length, where)
    return ds


def load_model(cfg: SFTStageConfig, tokenizer, resized: bool):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {}
    if cfg.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    if resized:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def answer_stats(model, tokenizer, rows, limit: int) -> dict:
    """Greedy answers to held-out prompts: how many have an <answer> block, how many are right."""
    from ladder.generation import generate
    from ladder.rewards import math_accuracy

    rows = [r for r in rows if r.get("answer")][:limit]
    if not rows:
        return {}
    prompts = [[m for m in r["messages"] if m["role"] != "assistant"] for r in rows]
    texts = generate(model, tokenizer, prompts, max_new_tokens=64)
    correct = [c for c in math_accuracy(texts, answer=[r["answer"] for r in rows]) if c is not None]
    return {"format_rate": sum("<answer>" in t and "</answer>" in t for t in texts) / len(texts),
            "accuracy": sum(correct) / max(1, len(correct)), "sample": texts[0]}


def last_checkpoint(output_dir):
    from transformers.trainer_utils import get_last_checkpoint

    import os

    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


def train(cfg: SFTStageConfig) -> dict:
    setup_process()
    if cfg.load_in_4bit:
        check_qlora()
    from trl import SFTTrainer

    from ladder import checkpoint
    from ladder.data.loaders import load_split

    tokenizer, resized = load_tokenizer(cfg.model)
    train_ds = load_chat_split(cfg, cfg.train_split, tokenizer, cfg.max_train_samples)
    test_ds, test_rows = None, []
    if cfg.test_split:
        try:
            test_ds = load_chat_split(cfg, cfg.test_split, tokenizer)
            test_rows = list(load_split(cfg.data, "sft", cfg.test_split, name=cfg.data_name))
        except LadderError:
            if cfg.data != SFTStageConfig.data:  # a user file without a test split: fine
                test_ds = None
            else:
                raise
    model = load_model(cfg, tokenizer, resized)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=test_ds,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {"train_loss": result.training_loss, "steps": result.global_step,
               "samples_per_second": result.metrics.get("train_samples_per_second")}
    if test_ds is not None:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]

    model = trainer.model
    if cfg.use_lora and cfg.merge_lora:
        model = model.merge_and_unload()
    if trainer.accelerator.is_main_process:
        if test_rows and cfg.eval_samples:
            metrics.update(answer_stats(model, tokenizer, test_rows, cfg.eval_samples))
        checkpoint.export(cfg.output_dir, model, tokenizer, stage="sft", parent=cfg.model,
                          config=to_dict(cfg), metrics=metrics)
        print(f"sft: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    trainer.accelerator.wait_for_everyone()
    return metrics


def main(argv=None) -> int:
    train(load_config(SFTStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
