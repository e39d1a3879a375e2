"""Eval with tools: the tool-call loop of training (TRL's _tool_call_loop) run for eval and the app, answers
scored on the last assistant message (never a tool's output), and the numbers that say how tools were used.

Most tests script the model: `generate_ids` is replaced by a fake that answers each context with a fixed
reply, so the loop itself (EOS cut, budgets, parsing, tool runs, token concatenation) is what runs."""

import json
import shutil
from fractions import Fraction
from types import SimpleNamespace

import pytest

from ladder.evaluation import evaluate_model, tool_stats
from ladder.generation import generate_with_tools, run_tool_calls, show_transcript
from ladder.rewards import completion_text

CALL = '<tool_call>calculator {"expression": "47 * 38"}</tool_call><|end|>'
ANSWER = "<think> 47 * 38 = 1786</think><answer> 1786</answer><|end|>"
ROW = {"prompt": [{"role": "user", "content": "What is 47 * 38?"}], "answer": "1786", "kind": "2-digit *"}


def calculator(expression: str) -> str:
    """Exact arithmetic on two numbers.

    Args:
        expression: two numbers with + - * / between them, e.g. "47 * 38"
    """
    a, op, b = expression.split()
    x, y = Fraction(a), Fraction(b)
    return str({"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op])


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first
        b: the second
    """
    return a + b


@pytest.fixture(scope="module")
def tok():
    """ladder's chat tokenizer (a tiny BPE, trained in a second), upgraded to render and parse tools."""
    from ladder.models import ensure_tool_template
    from ladder.pretrain.tokenizer import train_tokenizer

    texts = ["What is 47 * 38? <think> 47 * 38 = 1786</think><answer> 1786</answer> calculator expression "
             "error Tool not found boom tools"] * 20
    t = train_tokenizer(texts, vocab_size=300)
    ensure_tool_template(t)
    return t


class FakeModel:
    """What the loop needs of a model; `generate_ids` is scripted (see `script`)."""
    training = True
    generation_config = None
    config = SimpleNamespace(max_position_embeddings=4096)
    device = "cpu"

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self


def script(monkeypatch, tok, reply):
    """generate_ids answers each context with `reply(context_text, n_results_so_far)`, up to max_new_tokens
    and padded after its EOS, as model.generate does; returns the list of (context, max_new_tokens) seen."""
    import torch

    import ladder.generation

    seen = []
    tool_id = tok.convert_tokens_to_ids("<|tool|>")

    def fake(model, enc, config):
        rows = []
        for ids, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist()):
            context = [t for t, m in zip(ids, mask) if m]
            seen.append((tok.decode(context), config.max_new_tokens))
            new = tok(reply(tok.decode(context), context.count(tool_id)), add_special_tokens=False)["input_ids"]
            new = new[:config.max_new_tokens]
            if tok.eos_token_id in new:
                new = new[:new.index(tok.eos_token_id) + 1]
            rows.append(ids + new + [tok.pad_token_id] * (config.max_new_tokens - len(new)))
        return torch.tensor(rows)

    monkeypatch.setattr(ladder.generation, "generate_ids", fake)
    return seen


def test_a_call_its_result_and_the_answer_after_it(monkeypatch, tok):
    seen = script(monkeypatch, tok, lambda ctx, k: ANSWER if "3 + 4" in ctx or k else CALL)
    out = generate_with_tools(FakeModel(), tok, [ROW["prompt"], "What is 3 + 4?"], [calculator], max_new_tokens=64)
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "47 * 38"}}}
    assert out[0] == [{"role": "assistant", "content": "", "tool_calls": [call]},
                      {"role": "tool", "name": "calculator", "content": "1786"},
                      {"role": "assistant", "content": "<think> 47 * 38 = 1786</think><answer> 1786</answer>"}]
    assert completion_text(out[0]) == "<think> 47 * 38 = 1786</think><answer> 1786</answer>"
    assert [m["role"] for m in out[1]] == ["assistant"]  # answered at once: one round
    # the tools are offered; round 2 continues from the model's own tokens + the result, as TRL concatenates them
    assert seen[0][0].startswith("<|system|>tools: calculator(expression)<|end|><|user|>What is 47 * 38?")
    assert seen[2][0].endswith(CALL + "<|tool|> 1786<|end|><|assistant|>")
    shown = "🔧 calculator(47 * 38) → 1786\n<think> 47 * 38 = 1786</think><answer> 1786</answer>"
    assert show_transcript(out[0]) == shown
    assert generate_with_tools(FakeModel(), tok, [ROW["prompt"], "What is 3 + 4?"], [calculator],
                               max_new_tokens=64, batch_size=1) == out  # batching changes nothing


def test_errors_come_back_as_trl_shows_them_and_count_as_errors(monkeypatch, tok):
    def boom(expression: str) -> str:
        """Always fails.

        Args:
            expression: anything
        """
        raise ValueError("boom")

    calls = {"ok": '<tool_call>add {"a": 2, "b": 3}</tool_call><|end|>',
             "raises": '<tool_call>boom {"expression": "1"}</tool_call><|end|>',
             "unknown": '<tool_call>nope {"x": 1}</tool_call><|end|>',
             "bad args": '<tool_call>add {"a": 2}</tool_call><|end|>'}
    script(monkeypatch, tok, lambda ctx, k: "<answer> 5</answer><|end|>" if k else
           calls[next(c for c in calls if f"case {c}?" in ctx)])
    out = generate_with_tools(FakeModel(), tok, [f"case {c}?" for c in calls], [add, boom], max_new_tokens=256)
    results = [t[1]["content"] for t in out]
    assert results[0] == "5"
    assert results[1] == str({"error": "boom"}) == "{'error': 'boom'}"  # TRL's {"error": str(e)}, as str
    assert results[2] == str({"error": "Tool nope not found."})
    assert results[3].startswith("{'error': ") and "missing 1 required positional argument" in results[3]
    assert all(completion_text(t) == "<answer> 5</answer>" for t in out)
    stats = tool_stats(out, [1.0] * 4)
    assert stats["tool_error_rate"] == 0.75 and stats["tool_call_rate"] == 1.0
    assert run_tool_calls([{"type": "code", "name": "x"}], [add]) == [
        {"role": "tool", "name": "x", "content": "{'error': 'Unsupported tool call type: code'}"}]


def test_max_calls_stops_a_model_that_calls_forever(monkeypatch, tok):
    seen = script(monkeypatch, tok, lambda ctx, k: CALL)
    out = generate_with_tools(FakeModel(), tok, [ROW["prompt"]], [calculator], max_new_tokens=512, max_calls=2)[0]
    assert [m["role"] for m in out] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert len(seen) == 3 and out[-1]["tool_calls"]  # the third call is never run
    assert completion_text(out) == "" and show_transcript(out).endswith("🔧 calculator(47 * 38) (not run)")


def test_the_completion_budget_counts_generated_and_tool_tokens(monkeypatch, tok):
    long = "<think>" + " 47 * 38" * 100
    seen = script(monkeypatch, tok, lambda ctx, k: long if k else CALL)
    call_ids = tok(CALL, add_special_tokens=False)["input_ids"]
    suffix = tok("<|tool|> 1786<|end|><|assistant|>", add_special_tokens=False)["input_ids"]
    budget = len(call_ids) + len(suffix) + 10
    out = generate_with_tools(FakeModel(), tok, [ROW["prompt"]], [calculator], max_new_tokens=budget)[0]
    assert [m["role"] for m in out] == ["assistant", "tool", "assistant"]
    assert seen[1][1] == 10  # what is left of the budget after the call and its result
    assert out[-1]["content"] == tok.decode(tok(long, add_special_tokens=False)["input_ids"][:10])
    # a result that would not fit is dropped, as TRL drops it: the completion ends on its call
    out = generate_with_tools(FakeModel(), tok, [ROW["prompt"]], [calculator], max_new_tokens=len(call_ids) + 2)[0]
    assert [m["role"] for m in out] == ["assistant"] and out[0]["tool_calls"] and completion_text(out) == ""


def test_the_answer_is_the_last_assistant_message_never_the_tool_output(tok):
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "47 * 38"}}}]}
    result = {"role": "tool", "name": "calculator", "content": "1786"}
    stopped = [call, result]  # called, got the gold number back, never answered
    answered = [call, result, {"role": "assistant", "content": "<think> 47 * 38 = 1786</think><answer> 1786</answer>"}]
    assert completion_text(stopped) == "" and completion_text([]) == ""
    s = evaluate_model(None, None, [ROW, ROW], tools=[calculator], transcripts=[stopped, answered],
                       keep_completions=True)
    assert [c["score"] for c in s["completions"]] == [0.0, 1.0]
    assert s["completions"][0]["completion"] == "" and s["completions"][0]["messages"] == stopped
    assert s["samples"][1]["messages"] == answered and s["accuracy"] == 0.5


def test_tool_numbers_on_hand_made_transcripts(tok):
    def called(answer, error=False):
        return [{"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "1 + 1"}}}]},
                {"role": "tool", "name": "calculator", "content": "{'error': 'x'}" if error else "2"},
                {"role": "assistant", "content": f"<answer> {answer}</answer>"}]

    rows = [{"prompt": "q", "answer": "2", "kind": k} for k in ("a", "a", "b", "b")]
    plain = [{"role": "assistant", "content": "<answer> 3</answer>"}]
    transcripts = [called(2), called(2, error=True), called(3), plain]
    s = evaluate_model(None, None, rows, tools=[calculator], transcripts=transcripts)
    assert s["accuracy"] == 0.5 and s["tool_call_rate"] == 0.75 and s["tool_error_rate"] == pytest.approx(1 / 3)
    assert s["accuracy_with_tool"] == pytest.approx(2 / 3) and s["accuracy_without_tool"] == 0.0
    assert s["tool_call_rate_se"] == pytest.approx(0.25) and s["accuracy_with_tool_se"] > 0
    assert s["per_kind"]["a"]["tool_call_rate"] == 1.0 and s["per_kind"]["b"]["tool_call_rate"] == 0.5
    none = tool_stats([[{"role": "assistant", "content": "x"}]], [1.0])
    assert none["tool_call_rate"] == 0.0 and none["accuracy_with_tool"] is None and none["tool_error_rate"] is None
    from ladder.evaluation import curve_point

    assert curve_point({"accuracy": 0.5, "tool_call_rate": 0.75})["heldout_tool_call_rate"] == 0.75


def test_without_tools_nothing_changes(monkeypatch):
    import ladder.generation

    texts = ["<think> 47 * 38 = 1786</think><answer> 1786</answer>", "<answer> 1</answer>"]
    monkeypatch.setattr(ladder.generation, "generate", lambda *a, **k: list(texts))

    def refuse(*a, **k):
        raise AssertionError("no tool loop without tools")

    monkeypatch.setattr(ladder.generation, "generate_with_tools", refuse)
    rows = [ROW, {**ROW, "kind": "x"}]
    plain = evaluate_model(None, None, rows, keep_completions=True)
    assert evaluate_model(None, None, rows, keep_completions=True, tools=None) == plain
    assert evaluate_model(None, None, rows, keep_completions=True, tools=[]) == plain
    assert evaluate_model(None, None, rows, keep_completions=True, tools=[calculator], chat=False)["completions"] \
        == plain["completions"]  # a base model (few-shot) never gets tools
    assert not any("tool" in k for k in plain) and "messages" not in plain["completions"][0]
    assert not any("tool" in k for k in plain["per_kind"]["2-digit *"])


def test_real_tiny_model_gives_well_formed_transcripts(tiny_sft):
    from transformers import AutoModelForCausalLM

    from ladder.models import load_tokenizer

    tokenizer, grown = load_tokenizer(str(tiny_sft), tools=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    if grown:
        model.resize_token_embeddings(len(tokenizer))
    prompts = ["What is 47 * 38?", "What is 3 + 4?", [{"role": "user", "content": "What is 12 + 5?"}]]
    for temperature in (0.0, 1.0):
        out = generate_with_tools(model, tokenizer, prompts, [add], max_new_tokens=24, temperature=temperature)
        assert len(out) == 3
        for t in out:
            assert t and t[0]["role"] == "assistant"
            assert all(m["role"] in ("assistant", "tool") and isinstance(m["content"], str) for m in t)
            for prev, m in zip(t, t[1:]):
                assert m["role"] == "assistant" or prev.get("tool_calls") or prev["role"] == "tool"
            assert isinstance(completion_text(t), str)


def test_ladder_eval_uses_the_tools_a_checkpoint_was_trained_with(tiny_run, tiny_sft, tmp_path):
    from ladder.eval import main
    from ladder.evaluation import COMPLETIONS
    from ladder.manifest import atomic_write_json, read_manifest

    ckpt = tmp_path / "grpo"
    shutil.copytree(tiny_sft, ckpt, ignore=shutil.ignore_patterns(COMPLETIONS))
    manifest = read_manifest(ckpt)
    manifest["config"] = {**manifest.get("config", {}), "tools": ["calculator"], "max_tool_calling_iterations": 2}
    atomic_write_json(ckpt / "ladder.json", manifest)
    args = ["--checkpoints", str(ckpt), "--data", str(tiny_run / "data"), "--limit", "4", "--run", "null",
            "--backend", "hf", "--max_new_tokens", "24"]
    assert main(args) == 0
    m = read_manifest(ckpt)["metrics"]
    assert m["eval/tools"] == ["calculator"] and 0.0 <= m["eval/tool_call_rate"] <= 1.0
    assert isinstance(m["eval/accuracy_no_tools"], float) and "eval/accuracy_no_tools_se" in m
    done = [json.loads(line) for line in (ckpt / COMPLETIONS).read_text().splitlines()]
    assert len(done) == 4 and all(d["messages"] and d["completion"] == completion_text(d["messages"]) for d in done)
    assert main(args + ["--tools", "[]"]) == 0  # forced off: the earlier tool numbers go too
    m = read_manifest(ckpt)["metrics"]
    assert not {"eval/tool_call_rate", "eval/accuracy_no_tools", "eval/tools"} & set(m)
    assert "messages" not in json.loads((ckpt / COMPLETIONS).read_text().splitlines()[0])


def test_app_shows_calls_inline_and_judges_the_final_answer(tiny_sft, tmp_path, monkeypatch):
    import ladder.generation
    from ladder.apps.compare import AppConfig, Compare
    from ladder.manifest import atomic_write_json, read_manifest

    ckpt = tmp_path / "runs" / "u" / "grpo"
    shutil.copytree(tiny_sft, ckpt)
    manifest = read_manifest(ckpt)
    manifest["config"] = {**manifest.get("config", {}), "tools": ["calculator"]}
    atomic_write_json(ckpt / "ladder.json", manifest)
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "47 * 38"}}}]}
    result = {"role": "tool", "name": "calculator", "content": "1786"}
    final = {"role": "assistant", "content": "<think> 47 * 38 = 1786</think><answer> 1786</answer>"}
    replies = [[call, result, final], [call, result, {"role": "assistant", "content": "<answer> 12</answer>"}]]
    got = []

    def fake(model, tokenizer, prompts, tools, **kw):
        got.append([fn.__name__ for fn in tools])
        return [replies[len(got) - 1]]

    monkeypatch.setattr(ladder.generation, "generate_with_tools", fake)
    app = Compare(AppConfig(runs_dir=str(tmp_path / "runs")))
    right, wrong = app.compare(["u/grpo"], "What is 47 * 38?")[0], app.compare(["u/grpo"], "What is 47 * 38?")[0]
    assert got == [["calculator"], ["calculator"]]
    assert right["answer"].startswith("🔧 calculator(47 * 38) → 1786\n") and right["answer"].endswith("</answer>")
    assert right["verdict"].startswith("correct ✓") and "tools: calculator" in right["verdict"]
    assert wrong["verdict"].startswith("wrong ✗")  # the tool's 1786 is not the model's answer
