"""LoRA / QLoRA options shared by every trainable stage (peft does the work)."""

from __future__ import annotations

from dataclasses import dataclass

from ladder.config import option
from ladder.errors import LadderError
from ladder.runtime import has_cuda


@dataclass
class LoraOptions:
    use_lora: bool = option(False, "train LoRA adapters instead of every weight")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA scaling (alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA path")
    lora_target_modules: list[str] | str = option(
        "all-linear", "modules that get adapters: all-linear, or a list of names")
    load_in_4bit: bool = option(False, "QLoRA: needs CUDA + bitsandbytes")

    def check_lora(self) -> None:
        """Cheap checks, for the config's __post_init__."""
        if self.load_in_4bit and not self.use_lora:
            raise LadderError("load_in_4bit (QLoRA) trains LoRA adapters: set use_lora: true as well")


def check_qlora() -> None:
    if not has_cuda():
        raise LadderError("load_in_4bit (QLoRA) needs a CUDA GPU with bitsandbytes; on CPU use plain LoRA "
                          "(use_lora: true, load_in_4bit: false)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise LadderError("load_in_4bit (QLoRA) needs bitsandbytes: pip install -e '.[gpu]'") from None


def lora_config(opts: LoraOptions, task_type: str = "CAUSAL_LM"):
    """The peft LoraConfig for these options, or None when LoRA is off."""
    if not opts.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=opts.lora_target_modules, task_type=task_type)
