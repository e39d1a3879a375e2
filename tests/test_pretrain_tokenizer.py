import pytest
from transformers import AutoTokenizer

from ladder.errors import LadderError
from ladder.models import FORMAT_TOKENS, ensure_chat_template
from ladder.pretrain.tokenizer import TokenizerConfig, train_tokenizer

TEXTS = ["Q: What is 17 * 24?\nA: 17 * 24 = 17 * 20 + 17 * 4 = 340 + 68 = 408. The answer is 408.",
         "Sam has 12 apples. Ann gives Sam 5 more. Now Sam has 12 + 5 = 17 apples."] * 50


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300, min_frequency=1)


def test_round_trip_and_digits_one_per_token(tok):
    for text in TEXTS[:2] + ["héllo wörld ✓ 1234567890"]:
        assert tok.decode(tok(text)["input_ids"]) == text
    pieces = tok.tokenize(" 408")
    assert [p.lstrip("Ġ") for p in pieces] == ["4", "0", "8"]


def test_chat_template_and_assistant_mask(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)  # the template survives a save/load
    msgs = [{"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "<think>2 + 3 = 5</think><answer>5</answer>"}]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == "<|user|>What is 2 + 3?<|end|><|assistant|><think>2 + 3 = 5</think><answer>5</answer><|end|>"
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>")
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    assistant = tok.decode([i for i, m in zip(ids, mask) if m])
    assert assistant == "<think>2 + 3 = 5</think><answer>5</answer><|end|>"
    assert tok.eos_token == "<|end|>" and tok.pad_token_id != tok.eos_token_id
    for t in FORMAT_TOKENS:  # the format tags are single tokens that survive skip_special_tokens
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
        assert tok.decode(tok(t)["input_ids"], skip_special_tokens=True) == t


def test_foreign_tokenizer_gets_our_template(tok):
    tok.chat_template = None
    assert ensure_chat_template(tok)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<|user|>hi<|end|>"


def test_vocab_too_small_is_rejected():
    with pytest.raises(LadderError, match="vocab_size"):
        TokenizerConfig(vocab_size=100)


def test_every_preset_has_a_head_size_vllm_cpu_supports(tok):
    from ladder.pretrain.model import PRESETS, model_config

    for name in PRESETS:
        c = model_config(name, tok)
        assert c.hidden_size // c.num_attention_heads in (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512), name
