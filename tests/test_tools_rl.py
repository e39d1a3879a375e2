"""Tools in GRPO rollouts: a tool's output is context, never something the policy is trained to write.

TRL's tool loop appends each tool result to the completion and marks its tokens in `tool_mask`; the
loss multiplies the completion mask by it. These tests run ladder's GRPO trainer with the calculator on
scripted generations (a call, the result, an answer) and check the mask token by token, then that the
loss sends no gradient into the result's tokens while the policy's own tokens get one. Also: the data
stage's calculator chats, and SFT refusing chats that call a tool the recipe does not offer.
"""

from __future__ import annotations

import json

import pytest

from ladder.errors import LadderError

CALL = '<tool_call>calculator {"expression": " 47 * 38"}</tool_call><|end|>'
ANSWER = "<think> 1786</think><answer> 1786</answer><|end|>"
WRONG = "<think> 47 * 38 = 1700</think><answer> 1700</answer><|end|>"


def grpo_trainer(tiny_sft, tmp_path):
    from datasets import Dataset

    from ladder import grpo
    from ladder.config import load_config
    from ladder.models import load_model, load_tokenizer
    from ladder.rewards import math_accuracy
    from ladder.tools import calculator

    cfg = load_config(grpo.GRPOStageConfig, [
        "--model", str(tiny_sft), "--output_dir", str(tmp_path / "grpo"), "--per_device_train_batch_size", "2",
        "--num_generations", "2", "--max_completion_length", "64", "--report_to", "none", "--save_strategy", "no",
        "--eval_samples", "0", "--tools", '["calculator"]'])
    tokenizer, resized = load_tokenizer(cfg.model, tools=True)
    model = load_model(cfg, tokenizer, resized)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 47 * 38?"}], "answer": "1786"}])
    trainer = grpo.trainer_class()(model=model, reward_funcs=[math_accuracy], args=cfg, train_dataset=ds,
                                   processing_class=tokenizer, tools=[calculator])
    return trainer, tokenizer, ds


def scripted(tokenizer, turns: list[list[str]]):
    """A stand-in for the trainer's generation: call i returns turns[i], one completion per prompt."""
    calls = iter(turns)

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        texts = next(calls)
        assert len(texts) == len(prompt_ids)
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], None

    return generate


def test_tool_results_are_masked_out_of_the_grpo_loss(tiny_sft, tmp_path, monkeypatch):
    import torch

    trainer, tok, ds = grpo_trainer(tiny_sft, tmp_path)
    # rollout 0 calls the calculator, reads 1786 and answers; rollout 1 answers at once, wrongly
    monkeypatch.setattr(trainer, "_generate_single_turn", scripted(tok, [[CALL, WRONG], [ANSWER]]))
    trainer.model.train()
    out = trainer._generate_and_score_completions([ds[0], ds[0]])

    ids, mask, tool_mask = out["completion_ids"], out["completion_mask"], out["tool_mask"]
    called = tok.decode(ids[0][mask[0].bool()])
    assert called.startswith(CALL) and called.endswith(ANSWER) and "<|tool|> 1786" in called
    # exactly the tool's turn is masked: its role token, its text, and the assistant header after it
    assert tok.decode(ids[0][(mask[0] * (1 - tool_mask[0])).bool()]) == "<|tool|> 1786<|end|><|assistant|>"
    assert tool_mask[1][mask[1].bool()].all()  # no call, nothing masked
    # the reward read the final answer (right) and the direct one (wrong): the advantages differ
    assert out["advantages"][0] > 0 > out["advantages"][1]

    # the loss: no gradient reaches a tool token, every token the policy wrote gets one
    real = trainer._get_per_token_logps_and_entropies
    leaf = {}

    def logps_as_leaf(*args, **kwargs):
        logps, entropies, aux = real(*args, **kwargs)
        leaf["logps"] = logps.detach().requires_grad_(True)
        return leaf["logps"], entropies, aux

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", logps_as_leaf)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    trainer._compute_loss(trainer.model, out).backward()
    grad = leaf["logps"].grad
    tool_tokens = (mask * (1 - tool_mask)).bool()
    policy_tokens = (mask * tool_mask).bool()
    assert tool_tokens.sum() == len(tok("<|tool|> 1786<|end|><|assistant|>", add_special_tokens=False)["input_ids"])
    assert torch.all(grad[tool_tokens] == 0)
    assert torch.all(grad[policy_tokens] != 0)


def test_calculator_chats_in_the_data(tmp_path):
    """`tool_fraction` turns that share of SFT chats into calls, half on a three-digit problem; every
    other file is byte-for-byte what the same seed gives without tools."""
    from ladder.data import build
    from ladder.tools import calculator

    small = ["--corpus_docs", "50", "--sft_train", "400", "--prefs_train", "20", "--rl_train", "20",
             "--test_size", "20"]
    assert build.main(["--output_dir", str(tmp_path / "plain"), *small]) == 0
    assert build.main(["--output_dir", str(tmp_path / "tools"), *small, "--tool_fraction", "0.25"]) == 0
    for name in ("corpus_train", "sft_test", "prefs_train", "rl_train", "rl_test"):
        assert (tmp_path / "plain" / f"{name}.jsonl").read_bytes() == (tmp_path / "tools" / f"{name}.jsonl").read_bytes()
    rows = [json.loads(line) for line in open(tmp_path / "tools" / "sft_train.jsonl")]
    chats = [r for r in rows if any(m.get("tool_calls") for m in r["messages"])]
    assert 0.15 < len(chats) / len(rows) < 0.35
    assert any(r["kind"].startswith("3-digit") for r in chats) and any(r["kind"].startswith("2-digit") for r in chats)
    for r in chats:
        user, call, result, answer = r["messages"]
        expression = call["tool_calls"][0]["function"]["arguments"]["expression"]
        assert result == {"role": "tool", "name": "calculator", "content": calculator(expression)}
        assert result["content"] == r["answer"] and answer["content"].endswith(f"<answer> {r['answer']}</answer>")
        assert expression.strip() in user["content"]


def test_sft_refuses_a_chat_calling_a_tool_not_offered(tiny_base, tmp_path):
    from ladder import sft

    f = tmp_path / "chats.jsonl"
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2 + 3"}}}
    f.write_text(json.dumps({"messages": [
        {"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "calculator", "content": "5"},
        {"role": "assistant", "content": "<think> 5</think><answer> 5</answer>"}]}) + "\n")
    with pytest.raises(LadderError, match=r"line 1: calls tool 'calculator' \(the recipe offers none"):
        sft.main(["--model", str(tiny_base), "--data", str(f), "--output_dir", str(tmp_path / "out"),
                  "--report_to", "none"])


def test_chats_calling_different_tools_keep_each_call_as_written(tiny_sft, tmp_path):
    """Arrow would store calls to two tools as one struct and give every calculator call `code: None`
    (and every python call `expression: None`): the model would learn to pass arguments no tool takes."""
    from datasets import Dataset

    from ladder.data.chat import to_messages
    from ladder.data.loaders import load_split
    from ladder.models import load_tokenizer

    def chat(name, args):
        call = {"type": "function", "function": {"name": name, "arguments": args}}
        return {"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                             {"role": "tool", "name": name, "content": "5"}, {"role": "assistant", "content": "5"}]}

    rows = [chat("calculator", {"expression": "2 + 3"}), chat("python", {"code": "print(2 + 3)"})]
    f = tmp_path / "chats.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hub_like = Dataset.from_list(rows)  # a hub dataset's struct column: the Nones are already there
    assert hub_like[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"expression": "2 + 3", "code": None}
    tokenizer, _ = load_tokenizer(str(tiny_sft), tools=True)
    for ds in (load_split(str(f), "sft"), hub_like):
        chats = to_messages(ds, "chats")
        got = [c["messages"][1]["tool_calls"][0]["function"]["arguments"] for c in chats]
        assert got == [{"expression": "2 + 3"}, {"code": "print(2 + 3)"}]
        text = tokenizer.apply_chat_template(chats[0]["messages"], tokenize=False)
        assert '{"expression": "2 + 3"}' in text and "null" not in text


def test_a_hub_chat_template_gets_trls_tool_parser(tiny_sft, tmp_path):
    """A hub model keeps its own template (Qwen2.5's here, from TRL's copy: no hub needed): ladder adds
    only the parser TRL has for it, so calls in the model's own format are read back."""
    import shutil

    from transformers import AutoTokenizer
    from trl.chat_template_utils import parse_response, qwen2_5_chat_template

    from ladder.models import load_tokenizer
    from ladder.tools import python

    tok = AutoTokenizer.from_pretrained(tiny_sft)
    tok.add_tokens(["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"])
    tok.chat_template = qwen2_5_chat_template
    tok.save_pretrained(tmp_path)
    shutil.copy(tiny_sft / "config.json", tmp_path)
    loaded, changed = load_tokenizer(str(tmp_path), tools=True)
    assert not changed and loaded.chat_template == qwen2_5_chat_template
    prompt = loaded.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tools=[python],
                                        tokenize=False, add_generation_prompt=True)
    assert '"name": "python"' in prompt  # Qwen's template shows the tool's whole schema
    reply = '<tool_call>\n{"name": "python", "arguments": {"code": "print(2 + 3)"}}\n</tool_call><|im_end|>'
    ids = loaded(reply, add_special_tokens=False)["input_ids"]
    prefix = loaded(prompt, add_special_tokens=False)["input_ids"]
    parsed = parse_response(loaded, ids, prefix=prefix, tools=[python])
    assert parsed["tool_calls"][0]["function"] == {"name": "python", "arguments": {"code": "print(2 + 3)"}}


def test_a_template_without_tools_is_refused_in_one_line(tiny_sft, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from ladder.models import load_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sft)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok.save_pretrained(tmp_path)
    shutil.copy(tiny_sft / "config.json", tmp_path)
    with pytest.raises(LadderError, match="cannot render tool calls"):
        load_tokenizer(str(tmp_path), tools=True)


def test_hub_tool_recipe_code_path(tiny_run, tiny_sft, tmp_path):
    """recipes/qwen2.5-1.5b/tools/grpo.yaml's own settings (the python tool, its call limit, its rewards),
    on the tiny model and data with HF rollouts for two steps: the path a GPU run takes, on CPU."""
    from pathlib import Path

    from ladder import grpo
    from ladder.config import read_yaml
    from ladder.manifest import read_manifest

    recipe = read_yaml(Path(__file__).resolve().parents[1] / "recipes/qwen2.5-1.5b/tools/grpo.yaml")
    assert recipe["tools"] == ["python"]
    out = tmp_path / "grpo"
    argv = ["--config", str(Path(__file__).resolve().parents[1] / "recipes/qwen2.5-1.5b/tools/grpo.yaml"),
            "--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--data_name", "null",
            "--output_dir", str(out), "--rollout_backend", "hf", "--bf16", "false", "--gradient_checkpointing",
            "false", "--max_steps", "2", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
            "--num_generations", "4", "--max_completion_length", "48", "--eval_samples", "4", "--report_to", "none",
            "--save_strategy", "no", "--logging_steps", "1", "--learning_rate", "1e-4"]
    assert grpo.main(argv) == 0
    m = read_manifest(out)
    assert m["config"]["tools"] == ["python"] and m["config"]["max_tool_calling_iterations"] == 2
    assert "after/tool_call_rate" in m["metrics"] and all("tool_calls" in h for h in m["history"] if "reward" in h)
