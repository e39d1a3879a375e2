"""Batched greedy/sampled generation with HF transformers, for eval, tests and the app.

Chat models get their chat template; base models a few-shot prompt in the corpus format
(the difference is explicit: see `build_prompt`).
"""

from __future__ import annotations

# Two examples in the corpus's most common form (answered at once, as most text on the internet is):
# the base model answers in whatever form its prompt shows.
FEW_SHOT = ("Q: What is 23 + 14?\nA: 23 + 14 = 37. The answer is 37.\n\n"
            "Q: What is 6 * 7?\nA: 6 * 7 = 42. The answer is 42.\n\n")


def prompt_text(prompt) -> str:
    """The user's question, from a string or a chat message list."""
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"])


def build_prompt(tokenizer, prompt, chat: bool = True) -> str:
    """Chat template for chat models; few-shot plain text (`Q: ...\\nA:`) for base models."""
    if chat:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return FEW_SHOT + f"Q: {prompt_text(prompt)}\nA:"


def eos_ids(tokenizer, model=None) -> list[int]:
    """Every token that ends an answer: the tokenizer's EOS plus the model's generation_config.eos_token_id,
    a list on many chat models (Qwen2.5-Instruct: <|im_end|> and <|endoftext|>; Llama 3: <|eot_id|>, ...).
    One id alone would count what follows another EOS (padding) as the answer."""
    ids = {tokenizer.eos_token_id} - {None}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= {extra} if isinstance(extra, int) else set(extra or [])
    return sorted(ids)


def generation_config(tokenizer, eos: list[int], *, max_new_tokens: int, temperature: float, top_p: float = 1.0):
    """Everything that shapes the output, explicit: samples from softmax(logits / temperature) (nucleus only
    if top_p < 1), or greedy at temperature 0; no top-k, no repetition penalty, one beam. Used with
    `generate_ids`, so a checkpoint's generation_config.json (Qwen-Instruct: repetition_penalty 1.05,
    top_k 20, ...) cannot change the distribution that RL's log-probs and KL assume."""
    from transformers import GenerationConfig

    sampling = dict(do_sample=True, temperature=temperature, top_k=0, top_p=top_p) if temperature > 0 else \
        dict(do_sample=False)
    return GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, repetition_penalty=1.0, eos_token_id=eos,
                            pad_token_id=tokenizer.pad_token_id, **sampling)


def generate_ids(model, enc, config):
    """model.generate with `config` alone. transformers fills every field a config leaves unset from
    model.generation_config (the checkpoint's file: min_p, suppress_tokens, no_repeat_ngram_size, ...): while
    generating, that is a blank one (peft's wrapper copies its own onto the base model: both are blanked)."""
    import torch
    from transformers import GenerationConfig

    holders = [model] + ([model.get_base_model()] if hasattr(model, "get_base_model") else [])
    saved = [h.generation_config for h in holders]
    try:
        for h in holders:
            h.generation_config = GenerationConfig()
        with torch.no_grad():
            return model.generate(**enc, generation_config=config)
    finally:
        for h, g in zip(holders, saved):
            h.generation_config = g


def generate(model, tokenizer, prompts, *, chat: bool = True, max_new_tokens: int = 64, batch_size: int = 32,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """Completions (text after the prompt) for a list of prompts (strings or message lists)."""
    import torch

    texts = [build_prompt(tokenizer, p, chat) for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = generation_config(tokenizer, eos_ids(tokenizer, model), max_new_tokens=max_new_tokens,
                               temperature=temperature, top_p=top_p)
    out: list[str] = []
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            ids = generate_ids(model, enc, config)
            for row in ids[:, enc["input_ids"].shape[1]:]:
                text = tokenizer.decode(row, skip_special_tokens=True)
                out.append(text if chat else text.split("\n\n")[0])
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def is_chat_model(path) -> bool:
    """Base (pretrain/import of a base) checkpoints are prompted few-shot; everything after SFT chats."""
    from ladder.manifest import has_manifest, read_manifest

    if has_manifest(path):
        return read_manifest(path)["stage"] not in ("pretrain",)
    return True


def generate_vllm(path, prompts, *, chat: bool = True, max_new_tokens: int = 64, temperature: float = 0.0,
                  top_p: float = 1.0, seed: int = 0) -> list[str]:
    """The same completions as `generate`, from vLLM loading the checkpoint directory directly.

    On CPU the engine runs in fp32 (vLLM would pick bf16, which these CPUs only emulate: slower and
    drifting from the trainer) and in this process (vLLM-CPU otherwise spawns workers)."""
    import gc
    import os

    import torch
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all")
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = [build_prompt(tokenizer, p, chat) for p in prompts]
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    llm = LLM(model=str(path), dtype="auto" if cuda else "float32", enforce_eager=not cuda, seed=seed,
              max_model_len=longest + max_new_tokens + 8, gpu_memory_utilization=0.5 if cuda else 0.05)
    # a seed per prompt: one seed for all would give every prompt the same random draws (correlated samples)
    params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed + i)
              for i in range(len(texts))]
    outs = [o.outputs[0].text for o in llm.generate(texts, params, use_tqdm=False)]
    del llm
    gc.collect()
    return outs if chat else [o.split("\n\n")[0] for o in outs]
