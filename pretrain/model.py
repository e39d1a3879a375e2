"""The model: a Llama-architecture decoder from transformers, in a few sizes, built from scratch.

    tiny       ~0.1M  tests only
    mini       ~2M    the embedded default: learns worked arithmetic in a few CPU-minutes
    small      ~20M   a real small model (GPU or patient CPU)
    gpt2-124m  ~124M  GPT-2-class
"""

from __future__ import annotations

# Head size 32 or more: vLLM's CPU attention kernels support only [32, 64, 80, ..., 512].
PRESETS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "mini": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=6, intermediate_size=512),
    "small": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, intermediate_size=1536),
    "gpt2-124m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      tie_word_embeddings=False),
}


def model_config(preset: str, tokenizer, max_position_embeddings: int = 512):
    from transformers import AutoConfig, LlamaConfig

    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    if preset in PRESETS:
        sizes = {"tie_word_embeddings": True, **PRESETS[preset]}
        return LlamaConfig(**sizes, max_position_embeddings=max_position_embeddings, **ids)
    # anything else: a hub id or local dir whose *config* we train from scratch
    config = AutoConfig.from_pretrained(preset)
    for key, value in ids.items():
        setattr(config, key, value)
    return config


def build_model(preset: str, tokenizer, max_position_embeddings: int = 512, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    from ladder import attention

    torch.manual_seed(seed)
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
