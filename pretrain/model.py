"""The model: a Llama-architecture decoder from transformers, in a few sizes, built from scratch.

    tiny       ~0.1M  tests only
    mini       ~2M    the embedded default: learns worked arithmetic in a few CPU-minutes
    small      ~20M   a real small model (GPU or patient CPU)
    gpt2-124m  ~124M  GPT-2-class
"""

from __future__ import annotations

from ladder.errors import LadderError

# Head size 32 or more: vLLM's CPU attention kernels support only [32, 64, 80, ..., 512].
PRESETS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "mini": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, intermediate_size=512),
    "small": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, intermediate_size=1536),
    "gpt2-124m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      tie_word_embeddings=False),
}


def model_config(preset: str, tokenizer, max_position_embeddings: int = 512):
    """The config to build: a preset's, or the one of a hub id or local dir (trained from scratch).
    A name that is neither is one LadderError line naming it and the presets (train.py calls this
    before it reads and packs the corpus)."""
    from pathlib import Path

    from transformers import AutoConfig, LlamaConfig

    from ladder.data.loaders import looks_local
    from ladder.models import first_line, unreachable

    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    if preset in PRESETS:
        sizes = {"tie_word_embeddings": True, **PRESETS[preset]}
        return LlamaConfig(**sizes, max_position_embeddings=max_position_embeddings, **ids)
    presets = ", ".join(PRESETS)
    # a path (./x, /x, ~/x, a/b/c; not org/name, a hub id) that is not there: say so, rather than let the
    # hub client reject it as a repo id, or retry the network for it
    if looks_local(preset) and not Path(preset).expanduser().exists():
        raise LadderError(f"model '{preset}': no such folder (and not a preset: {presets})")
    # anything else: a hub id or local dir whose *config* we train from scratch
    try:
        config = AutoConfig.from_pretrained(preset)
    except Exception as e:  # OSError (not found, offline), ValueError (a config transformers cannot read)...
        why = unreachable(preset, e) or f"no model config could be loaded from it ({first_line(e)})"
        raise LadderError(f"model '{preset}': not a preset ({presets}), and {why}") from None
    for key, value in ids.items():
        setattr(config, key, value)
    return config


def build_model(preset: str, tokenizer, max_position_embeddings: int = 512, seed: int = 0, config=None):
    """Fresh weights for `preset` (or for `config`, model_config's result, when the caller resolved it
    up front)."""
    import torch
    from transformers import AutoModelForCausalLM

    from ladder import attention

    torch.manual_seed(seed)
    if config is None:
        config = model_config(preset, tokenizer, max_position_embeddings)
    model = attention.use(AutoModelForCausalLM.from_config(config))  # eager for short bf16 passes on the CPU
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def n_params(model) -> int:
    """Parameters of the whole model; under DeepSpeed ZeRO-3 each local tensor is an empty shard whose
    real shape is `ds_shape`."""
    import math

    return sum(math.prod(getattr(p, "ds_shape", p.shape)) for p in model.parameters())
