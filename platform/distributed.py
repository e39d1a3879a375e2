"""Whole weights from sharded ones: what stages need under DeepSpeed ZeRO-3 (and nothing elsewhere).

Under ZeRO-3 every rank holds a shard of each weight. A stage that evaluates, samples or saves on one
rank needs the weights whole: `unsharded` / `gathered_copy` give rank 0 a plain copy after training,
`whole_weights` gathers them in place for a forward pass or a weight sync, and `zero3_off` builds a
model on this rank alone while a ZeRO-3 config is registered. Without ZeRO-3 each is a no-op.
"""

from __future__ import annotations

import contextlib
import functools

from ladder.errors import LadderError


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
    and rank 0 gets a plain copy (no ZeRO hooks), the other ranks None. Elsewhere: trainer.model,
    its forward without mixed precision's autocast."""
    if not is_zero3(trainer.accelerator):
        # without accelerate's autocast wrapper on forward (bf16 training, ladder.precision): the "after"
        # scores are then measured in fp32, like the "before" ones and like the checkpoint will load
        return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
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


def whole_weights(module):
    """Every weight of `module` in full while inside, when ZeRO-3 has partitioned them (all ranks must
    enter: it is a collective); elsewhere nothing to do."""
    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)
