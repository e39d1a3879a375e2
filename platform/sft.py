"""`ladder sft`: teach a base model to chat (TRL SFTTrainer; LoRA/QLoRA through peft).

    accelerate launch -m ladder.sft --config recipes/tiny/sft.yaml
    ladder sft --config recipes/tiny/sft.yaml --use_lora true

Reads like the recipe: config -> chat data (any common layout, every row checked) -> model and
tokenizer (ours has a chat template with generation markers; a tokenizer without a template gets
ours) -> SFTTrainer with loss on assistant tokens only -> merged HF checkpoint + manifest with
held-out loss, format rate and accuracy (`generate_answers` + `is_correct`, reusable).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

from trl import SFTConfig

from ladder.config import load_config, to_dict
from ladder.errors import LadderError
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.runtime import check_engine, cpu_training_defaults, say_rank, seed_everything, setup_process


@dataclass
class SFTStageConfig(LoraOptions, SFTConfig):
    # ladder's own options; every SFTConfig option passes through from the recipe as well
    model: str = "runs/tiny/base"
    data: str = "runs/tiny/data"  # built-in data dir, a chat file (.jsonl/.parquet...), or a hub id
    data_name: str | None = None  # hub dataset config name
    # the source's columns -> the stage's (ladder.data.transforms): "gsm8k", {"prompt": "question"},
    # "file.py:fn" or "none"; unset: known hub ids (openai/gsm8k, mbpp, ...) get their built-in formatter
    data_transform: str | dict | None = None
    train_split: str = "train"
    test_split: str | None = "test"  # held-out chat data for eval loss and the generation check
    test_data: str | None = None  # held-out chats from elsewhere (default: data's test_split; a file has none)
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


def held_out_source(data: str, test_data: str | None, test_split: str | None) -> str | None:
    """Where held-out rows come from: `test_data` if given, else `data`'s test split. A single local
    file has no splits (reading it again would score the model on its own training rows): none."""
    from pathlib import Path

    from ladder.data.loaders import FILE_TYPES

    if test_data:
        return test_data
    if not test_split or Path(data).suffix in FILE_TYPES:
        return None
    return data


def check_model_path(path: str) -> None:
    """A model given as a local path must be a checkpoint folder (hub ids like org/name are left to
    transformers): one line naming it, before anything loads."""
    from pathlib import Path

    from ladder.data.loaders import looks_local

    folder = Path(str(path)).expanduser()
    if folder.is_dir():
        if not any((folder / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise LadderError(f"model '{path}': not a checkpoint folder (no config.json; an unfinished run? "
                              "a finished one has ladder.json)")
    elif looks_local(str(path)):
        raise LadderError(f"model '{path}': no such checkpoint folder")


def load_tokenizer(path: str):
    """The checkpoint's tokenizer; one without a chat template gets ours (returns it, changed?)."""
    from transformers import AutoTokenizer

    from ladder.pretrain.tokenizer import ensure_chat_template

    check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise LadderError(f"model '{path}': cannot load its tokenizer ({str(e).splitlines()[0][:160]})") from None
    changed = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, changed


def load_chats(source: str, split: str, cfg: SFTStageConfig, tokenizer, limit=None):
    """(chats as `messages`, every row checked; the raw rows, whose `answer` column the generation check uses)."""
    from ladder.data.chat import check_lengths, to_messages
    from ladder.data.loaders import load_split

    raw = load_split(source, "sft", split, name=cfg.data_name, transform=cfg.data_transform, limit=limit)
    where = f"{source}[{split}]"
    ds = to_messages(raw, where)
    check_lengths(ds, tokenizer, cfg.max_length, where)
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


def load_model(cfg, tokenizer, resized: bool, auto_class=None, quantize: bool | None = None, **kwargs):
    """The parent checkpoint (4-bit for QLoRA), embeddings grown when chat tokens were added.
    `auto_class` picks the head: causal LM here, sequence classification for the reward model."""
    import torch

    if auto_class is None:
        from transformers import AutoModelForCausalLM as auto_class
    if cfg.load_in_4bit if quantize is None else quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = auto_class.from_pretrained(cfg.model, **kwargs)
    except (OSError, ValueError) as e:
        raise LadderError(f"model '{cfg.model}': cannot load ({str(e).splitlines()[0][:160]})") from None
    if resized:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def plain_model(model, cfg, tokenizer, resized: bool, auto_class=None, **kwargs):
    """What gets saved: with LoRA, the adapter merged into the weights (unless merge_lora is off),
    so later stages and vLLM load a plain model. QLoRA's adapter goes into a full-precision copy
    of the parent: merging into 4-bit weights would re-quantise them, and vLLM refuses bitsandbytes."""
    if not cfg.use_lora or not getattr(cfg, "merge_lora", True):
        return model
    if not cfg.load_in_4bit:
        return model.merge_and_unload()
    import torch
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    full = load_model(cfg, tokenizer, resized, auto_class, quantize=False,
                      dtype=torch.bfloat16 if cfg.bf16 else torch.float32, **kwargs)
    full = get_peft_model(full, model.peft_config["default"])
    set_peft_model_state_dict(full, get_peft_model_state_dict(model))
    return full.merge_and_unload()


def is_zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


@contextlib.contextmanager
def zero3_off():
    """Build models in this process alone: transformers partitions every model it builds (even a
    head's inner `from_config`) between the ranks while a ZeRO-3 config is registered."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if ref is not None and ref() is not None:
            hf_deepspeed.set_hf_deepspeed_config(ref())


def unsharded(trainer):
    """The trained model, whole, for rank 0 to evaluate and save alone. Under ZeRO-3 each rank holds
    only a shard of every weight: a forward pass on rank 0 alone would hang and a save would write
    empty tensors. So every rank gathers the full weights (a collective: all ranks must call this)
    and rank 0 gets a plain copy (no ZeRO hooks), the other ranks None. Elsewhere: trainer.model."""
    if not is_zero3(trainer.accelerator):
        return trainer.model
    return gathered_copy(trainer.accelerator, trainer.model_wrapped, trainer.model)


def gathered_copy(accelerator, wrapped, model, prefix: str = ""):
    """Under ZeRO-3: every rank gathers `wrapped`'s full weights (a collective), rank 0 gets a plain
    copy of `model` (the submodule under `prefix` in `wrapped`'s state dict, e.g. "policy.") holding
    them, the other ranks None."""
    state = accelerator.get_state_dict(wrapped)  # full weights, on rank 0
    if not accelerator.is_main_process:
        return None
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    with zero3_off():  # a plain copy, not partitioned between the ranks as it is built
        if hasattr(model, "peft_config"):  # a LoRA model: the same adapter on a plain copy of the base
            from peft import get_peft_model

            base = model.get_base_model()
            copy = get_peft_model(type(base)(base.config), model.peft_config["default"])
        else:
            copy = type(model)(model.config)
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    copy.to(device=accelerator.device, dtype=dtype)  # where and as the trained weights are
    missing, unexpected = copy.load_state_dict(state, strict=False)
    tied = {k for k in missing if getattr(copy.config, "tie_word_embeddings", False) and "lm_head" in k}
    if set(missing) - tied or unexpected:
        raise LadderError(f"gathering the ZeRO-3 model: missing {sorted(set(missing) - tied)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]}")
    plain = copy.get_base_model() if hasattr(copy, "peft_config") else copy
    if getattr(plain, "generation_config", None) is not None:  # a causal LM (not a reward model)
        plain.generation_config = getattr(model, "generation_config", plain.generation_config)
        # transformers' generate runs in lock-step with the other ranks whenever ZeRO-3 is on: not this copy
        plain.generate = functools.partial(type(plain).generate, plain, synced_gpus=False)
    return copy.train(model.training)


def generate_answers(model, tokenizer, prompts, max_new_tokens: int = 64, batch_size: int = 32) -> list[str]:
    """Greedy completions for chat prompts (strings or message lists): batched, left-padded."""
    from ladder.generation import generate

    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


def is_correct(texts: list[str], answers: list) -> list[float]:
    """1.0 where the final answer equals the gold one: ladder.rewards' math_accuracy (equivalent
    forms count), or, without it, the last number in the text compared as a string."""
    try:
        from ladder.rewards import math_accuracy
    except ImportError:  # pragma: no cover - the rewards package is optional for this check
        import re

        def last_number(t):
            found = re.findall(r"-?\d+(?:\.\d+)?", t.split("<answer>")[-1])
            return found[-1] if found else None

        return [float(last_number(t) == str(a).strip()) for t, a in zip(texts, answers)]
    return [c or 0.0 for c in math_accuracy(texts, answer=answers)]


def answer_stats(model, tokenizer, chats, answers, limit: int) -> dict:
    """Greedy answers to the held-out chats that have a gold `answer`: the share with an <answer>
    block (format_rate) and the share that is right (accuracy)."""
    from ladder.data.chat import prompt_of

    pairs = [(prompt_of(c), a) for c, a in zip(chats, answers) if a not in (None, "")][:limit]
    if not pairs:
        return {}
    texts = generate_answers(model, tokenizer, [p for p, _ in pairs])
    correct = is_correct(texts, [a for _, a in pairs])
    return {"format_rate": sum("<answer>" in t and "</answer>" in t for t in texts) / len(texts),
            "accuracy": sum(correct) / len(correct), "eval_n": len(pairs), "sample": texts[0]}


def last_checkpoint(output_dir) -> str | None:
    """The newest complete Trainer checkpoint in output_dir (`checkpoint-N`), or None.

    The Trainer writes a checkpoint in place, trainer_state.json last: a run killed while saving
    leaves a `checkpoint-N` without it (or with half of it), and resuming from that one would fail or
    start from a half-saved state. So only checkpoints whose trainer_state.json reads are candidates;
    the one before (kept until the new one is complete) is used instead."""
    import json
    from pathlib import Path

    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    root = Path(output_dir)
    if not root.is_dir():
        return None
    steps = {}
    for path in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.rpartition("-")[2]
        if not step.isdigit() or not path.is_dir():
            continue
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text())
        except (OSError, ValueError):
            print(f"resume: skipping {path}: incomplete (killed while saving?)")
            continue
        steps[int(step)] = path
    return str(steps[max(steps)]) if steps else None


def train(cfg: SFTStageConfig) -> dict:
    setup_process()
    if cfg.load_in_4bit:
        check_qlora()
    from trl import SFTTrainer

    from ladder import checkpoint

    tokenizer, resized = load_tokenizer(cfg.model)
    train_ds, _ = load_chats(cfg.data, cfg.train_split, cfg, tokenizer, cfg.max_train_samples)
    test_ds, test_chats, answers = None, [], []
    source = held_out_source(cfg.data, cfg.test_data, cfg.test_split)
    if source:
        test_ds, raw = load_chats(source, cfg.test_split or "test", cfg, tokenizer)
        test_chats = test_ds["messages"]
        answers = raw["answer"] if "answer" in raw.column_names else []
    train_ds, test_ds = loss_on_answers(cfg, tokenizer, train_ds, test_ds)
    seed_everything(cfg.seed)  # LoRA's A matrices (and embeddings grown for chat tokens) are drawn from torch's RNG
    model = load_model(cfg, tokenizer, resized)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=train_ds, eval_dataset=test_ds,
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    check_engine(trainer.accelerator)
    resume = last_checkpoint(cfg.output_dir) if cfg.resume else None
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
        if answers and cfg.eval_samples:
            metrics.update(answer_stats(model, tokenizer, test_chats, answers, cfg.eval_samples))
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
