"""Models and tokenizers, loaded one way for every stage: the parent checkpoint (4-bit for QLoRA),
its tokenizer (one without a chat template gets ladder's, with its tokens added and the embeddings
grown to match), what gets saved (LoRA merged, QLoRA's adapter on a full-precision copy), and reward
models as scorers of (prompt, completion) pairs for PPO, eval and the app.
"""

from __future__ import annotations

import functools

from ladder import attention
from ladder.errors import LadderError

# ---- ladder's chat template (the tokenizer stage gives it to every tokenizer it trains) ----
EOS, PAD = "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# Tags of the answer format: ordinary (non-special) tokens so they survive skip_special_tokens.
FORMAT_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


# The same template able to offer tools and carry their calls and results (ensure_tool_template): the tool
# list is one short line (names and argument names: a tiny model learns the rest from its SFT data; a
# hub model's own template shows the full schemas), a call is `<tool_call>name {json arguments}</tool_call>`
# at the end of an assistant turn, and a result is a `<|tool|>` turn, outside the generation markers, so
# SFT's assistant-only loss and GRPO's tool mask both leave it out.
TOOL_ROLE = "<|tool|>"
TOOL_TAGS = ["<tool_call>", "</tool_call>"]
TOOL_CHAT_TEMPLATE = (
    "{%- if tools -%}<|system|>tools:"
    "{%- for t in tools -%}{%- set f = t.function if t.function is defined else t %}"
    " {{ f.name }}({{ (f.parameters.properties or {}).keys() | join(', ') }})"
    "{%- endfor -%}<|end|>{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] or '' }}"
    "{%- for call in message.get('tool_calls') or [] -%}"
    "{%- set f = call.function if call.function is defined else call -%}"
    "<tool_call>{{ f.name }} {% if f.arguments is string %}{{ f.arguments }}{% else %}{{ f.arguments | tojson }}"
    "{% endif %}</tool_call>"
    "{%- endfor -%}<|end|>{% endgeneration %}"
    "{%- elif message['role'] == 'tool' -%}"
    "<|tool|> {{ message['content'] }}<|end|>"  # ` 1786`: a number tokenizes as it does everywhere else
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
# How transformers' parse_response (which TRL calls on every completion) reads a reply in that template back
# into {"content", "tool_calls"}. The <think>/<answer> tags stay in `content`: the rewards read them there.
TOOL_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>",
    "fields": {
        "tool_calls": {"open_pattern": r"<tool_call>(?P<name>[^\s<]+) ", "close_pattern": r"</tool_call>",
                       "repeats": True, "content": "json",
                       "transform": {"type": "function", "function": {"name": "{name}", "arguments": "{content}"}}},
        "content": {"close_pattern": r"<\|end\|>", "content": "text"},
    },
}


def ensure_tool_template(tokenizer) -> bool:
    """Make a tokenizer render tool offers, calls and results, and parse calls back. ladder's template
    becomes its tool version (tokens added: True, grow the embeddings); a hub template that renders tools
    gets TRL's parser for it; one that cannot is a one-line error."""
    if tokenizer.chat_template in (CHAT_TEMPLATE, TOOL_CHAT_TEMPLATE):
        changed = tokenizer.chat_template == CHAT_TEMPLATE
        if changed:
            tokenizer.add_special_tokens({"additional_special_tokens": [TOOL_ROLE]},
                                         replace_extra_special_tokens=False)
            tokenizer.add_tokens(TOOL_TAGS)
            tokenizer.chat_template = TOOL_CHAT_TEMPLATE
        tokenizer.response_template = TOOL_RESPONSE_TEMPLATE
        return changed
    if getattr(tokenizer, "response_template", None) or getattr(tokenizer, "response_schema", None):
        return False
    if "tool" not in (tokenizer.chat_template or ""):
        raise LadderError(f"tokenizer '{tokenizer.name_or_path}': its chat template cannot render tool calls "
                          "(no tool support in it); use an instruct model whose template has tools")
    from trl.chat_template_utils import add_response_schema

    try:
        add_response_schema(tokenizer)
    except ValueError:
        raise LadderError(f"tokenizer '{tokenizer.name_or_path}': ladder cannot parse tool calls in its chat "
                          "template (TRL knows Qwen, Llama 3, GLM, GPT-OSS, ...); set tokenizer.response_template "
                          "in the checkpoint's tokenizer_config.json") from None
    return False


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template ours (adding its tokens). True if it changed."""
    if tokenizer.chat_template:
        return False
    tokenizer.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    tokenizer.add_tokens([EOS, *FORMAT_TOKENS])
    if tokenizer.eos_token is None:
        tokenizer.eos_token = EOS
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = CHAT_TEMPLATE
    return True


# ---- loading ----
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


def unreachable(name: str, e: Exception) -> str | None:
    """The error's tail for `name` when it failed as a hub id and is no local path: a local folder's typo
    (`sftt`), or no network (huggingface_hub then retries for ~50 s first). None where that is not the
    story: the path exists, or the failure is not transformers' OSError for a repo it could not get."""
    from pathlib import Path

    from huggingface_hub import constants

    if not isinstance(e, OSError) or Path(str(name)).expanduser().exists():
        return None
    hint = ("HF_HUB_OFFLINE is set: only models already downloaded load" if constants.HF_HUB_OFFLINE
            else "offline? set HF_HUB_OFFLINE=1 to fail fast")
    return f"is neither a local folder nor a reachable hub model ({hint}): {first_line(e)}"


def first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__


def load_error(what: str, name: str, e: Exception, failed: str = "cannot load") -> LadderError:
    """The one line for a failed from_pretrained of `what` ('model', 'reward model') `name`."""
    why = unreachable(name, e)
    return LadderError(f"{what} '{name}' {why}" if why else f"{what} '{name}': {failed} ({first_line(e)})")


def load_tokenizer(path: str, tools: bool = False):
    """The checkpoint's tokenizer; one without a chat template gets ours, and with `tools` its template
    learns to render and parse tool calls (returns it, changed?: then the model's embeddings grow)."""
    from transformers import AutoTokenizer

    check_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise load_error("model", path, e, "cannot load its tokenizer") from None
    changed = ensure_chat_template(tokenizer)
    if tools:
        changed = ensure_tool_template(tokenizer) or changed
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, changed


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
    # fp32 weights whatever the checkpoint holds (transformers 5 would keep a hub model's bf16): the
    # optimizer then updates fp32 masters, and bf16 is the forward's autocast only (ladder.precision)
    kwargs.setdefault("dtype", torch.float32)
    try:
        model = auto_class.from_pretrained(cfg.model, **kwargs)
    except (OSError, ValueError) as e:
        raise load_error("model", cfg.model, e) from None
    if resized:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return attention.use(model)  # eager for short bf16 passes on the CPU, else SDPA


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


# ---- reward models ----
def conversation_text(tokenizer, prompt, completion) -> str:
    """What the reward model reads: the chat template over prompt + answer, or plain text + EOS
    (exactly how TRL's RewardTrainer tokenises pairs)."""
    if isinstance(completion, list) or isinstance(prompt, list):
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt or [])
        answer = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    return (prompt or "") + completion + tokenizer.eos_token


@functools.lru_cache(maxsize=4)
def load_reward_model(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        import torch

        if torch.cuda.is_available():  # this process's GPU (under accelerate launch: its local rank's)
            import os

            model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    except Exception as e:
        raise load_error("reward model", path, e) from None
    return model, tokenizer


SCORE_MAX_TOKENS = 1024  # the most one scored text may take (memory); less where the reward model reads less


def score(reward_model_dir, prompts, completions, batch_size: int = 16, *, strict: bool = False) -> list:
    """Reward-model scores for (prompt, completion) pairs; prompts/completions as text or messages.

    Texts are re-tokenised with the reward model's own tokenizer, so a policy with a different
    tokenizer works too. The model is loaded once per path (cached). A text longer than the reward model
    reads (score_limit) loses its start, never its answer; where even the answer does not fit, strict=True
    gives None for it (the app: no number rather than a wrong one), otherwise the answer's end is scored
    (training and eval need a number for every row)."""
    if len(prompts) != len(completions):
        raise LadderError(f"score: {len(prompts)} prompts but {len(completions)} completions")
    model, tokenizer = load_reward_model(str(reward_model_dir))
    return score_with(model, tokenizer, prompts, completions, batch_size, strict=strict)


def context_length(model, tokenizer) -> int | None:
    """Tokens the model reads at most: its max_position_embeddings, or the tokenizer's model_max_length if
    smaller (a tokenizer naming no limit says int(1e30): not a limit); None where neither says."""
    limits = [getattr(getattr(model, "config", None), "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 10**7]
    return min(limits) if limits else None


def score_limit(model, tokenizer) -> int:
    """Tokens one scored text may take: SCORE_MAX_TOKENS, or less where the reward model reads less."""
    return min(SCORE_MAX_TOKENS, context_length(model, tokenizer) or SCORE_MAX_TOKENS)


def answer_start(tokenizer, prompt, completion, text: str) -> int:
    """Where the answer begins in `text` (conversation_text of the pair), in characters: where it parts from
    the same conversation with an empty answer; at or before the answer's first character."""
    import os

    empty = conversation_text(tokenizer, prompt, [] if isinstance(completion, list) else "")
    return len(os.path.commonprefix([text, empty]))


def score_with(model, tokenizer, prompts, completions, batch_size: int = 16, *, strict: bool = False) -> list:
    import torch

    texts = [conversation_text(tokenizer, p, c) for p, c in zip(prompts, completions)]
    limit = score_limit(model, tokenizer)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=tokenizer.is_fast)
    ids: list = []
    for i, (p, c, text) in enumerate(zip(prompts, completions, texts)):
        row = enc["input_ids"][i]
        if len(row) > limit:
            # cut from the left: cut from the right (as before), a long prompt left no answer to score, so
            # every answer to it scored the same
            start = answer_start(tokenizer, p, c, text)
            if tokenizer.is_fast:
                answer = len(row) - next((t for t, (_, end) in enumerate(enc["offset_mapping"][i]) if end > start),
                                         len(row))
            else:
                answer = len(tokenizer(text[start:], add_special_tokens=False)["input_ids"])
            row = None if strict and answer > limit else row[-limit:]
        ids.append(row)
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    was_training = model.training
    model.eval()
    scored = [i for i, row in enumerate(ids) if row is not None]
    out: list = [None] * len(texts)
    try:
        for b in range(0, len(scored), batch_size):
            rows = scored[b:b + batch_size]
            enc = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                for i, value in zip(rows, model(**enc).logits[:, 0].float().tolist()):
                    out[i] = value
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out
