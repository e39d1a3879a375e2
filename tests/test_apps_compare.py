"""The app's logic (no browser): side-by-side answers, rewards, registry-only loading."""

import re
import shutil

import pytest

from ladder.apps.compare import AppConfig, Compare, gold_for, judge


@pytest.fixture(scope="module")
def registry(tiny_run, tiny_sft, tiny_rm, tmp_path_factory):
    root = tmp_path_factory.mktemp("app") / "runs"
    for stage in ("data", "base", "sft", "rm"):
        shutil.copytree(tiny_run / stage, root / "t" / stage)
    return root


def test_side_by_side_answers_with_rewards(registry):
    app = Compare(AppConfig(runs_dir=str(registry)))
    assert app.default_choice() == ["t/base", "t/sft"]
    out = app.compare(["t/base", "t/sft"], "What is 12 + 5?")
    assert [o["checkpoint"] for o in out] == ["t/base", "t/sft"]
    assert all(o["answer"].strip() for o in out)
    assert "few-shot prompt (base model)" in out[0]["verdict"]
    assert "chat template" in out[1]["verdict"] and "RM score" in out[1]["verdict"]
    assert ("correct ✓" in out[1]["verdict"]) or ("wrong ✗" in out[1]["verdict"])


def test_streaming_yields_growing_answers(registry):
    app = Compare(AppConfig(runs_dir=str(registry)))
    steps = [answers[0] for answers, _ in app.stream(["t/sft"], "What is 3 + 4?", max_tokens=16)]
    assert len(steps) > 2 and steps[-1].startswith(steps[1])


def test_paths_outside_the_registry_and_broken_checkpoints_are_refused(registry, tmp_path):
    app = Compare(AppConfig(runs_dir=str(registry)))
    out = app.compare(["/etc", "../../x", "t/nope"], "What is 1 + 1?")
    assert "outside the run registry" in out[0]["answer"] and "outside the run registry" in out[1]["answer"]
    assert "not a finished checkpoint" in out[2]["answer"]
    broken = registry / "t" / "broken"
    shutil.copytree(registry / "t" / "sft", broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    assert "could not be loaded" in app.compare(["t/broken"], "hi")[0]["answer"]


def test_a_run_and_its_reward_model_come_from_the_registry_only(registry, tmp_path):
    """`--run` was used as given: a folder anywhere had its report, plots and reward model read and loaded."""
    from ladder.errors import LadderError

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(registry / "t", elsewhere)
    for bad in (str(elsewhere), "../../elsewhere"):
        with pytest.raises(LadderError, match="outside the run registry"):
            Compare(AppConfig(runs_dir=str(registry), run=bad))
    linked = registry / "linked"
    (linked / "sft").parent.mkdir()
    shutil.copytree(registry / "t" / "sft", linked / "sft")
    (linked / "rm").symlink_to(elsewhere / "rm")  # the run is inside, its reward model is not
    try:
        with pytest.raises(LadderError, match="outside the run registry"):
            Compare(AppConfig(runs_dir=str(registry), run="linked"))
    finally:
        shutil.rmtree(linked)
    assert Compare(AppConfig(runs_dir=str(registry), run="t")).reward_model == str((registry / "t" / "rm").resolve())


def test_custom_tools_named_in_a_manifest_run_only_when_trusted(registry, tmp_path):
    """A checkpoint's manifest names the tools it was trained with; loading a custom one imports its file, so
    picking a checkpoint copied from elsewhere would have run its code. The app refuses unless told."""
    from ladder.manifest import read_manifest, write_manifest

    marker = tmp_path / "ran"
    tool = tmp_path / "evil_tool.py"
    tool.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef word_count(text: str) -> str:\n"
                    f"    \"\"\"Count words.\n\n    Args:\n        text: the text\n    \"\"\"\n"
                    f"    return str(len(text.split()))\n")
    tooled = registry / "t" / "tooled"
    shutil.copytree(registry / "t" / "sft", tooled)
    m = read_manifest(tooled)
    write_manifest(tooled, stage=m["stage"], config={**m["config"], "tools": [f"{tool}:word_count"]},
                   metrics=m.get("metrics", {}))
    try:
        out = Compare(AppConfig(runs_dir=str(registry))).compare(["t/tooled"], "hi")[0]["answer"]
        assert "custom tools" in out and "--trust_tools true" in out and not marker.exists()
        trusted = Compare(AppConfig(runs_dir=str(registry), trust_tools=True))
        trusted.models.get("t/tooled")
        assert marker.exists()
    finally:
        shutil.rmtree(tooled)


def test_gold_answers_for_typed_and_held_out_prompts():
    assert gold_for("What is 17 * 24?", {}) == {"answer": "408"}
    assert gold_for("p", {"p": {"answer": None, "numbers": [1], "target": 1}})["target"] == 1
    assert gold_for("Tell me a story", {}) == {}


def test_app_binds_to_localhost_by_default():
    assert AppConfig().host == "127.0.0.1"


def test_rewards_are_right_in_handler_threads():
    """Gradio runs handlers off the main thread, where math-verify's timeouts cannot work."""
    import threading

    out = {}
    texts = {"right": "<think>12 + 5 = 17</think><answer>17</answer>", "equal": "<answer>17.0</answer>",
             "wrong": "<think>12 + 5 = 18</think><answer>18</answer>", "malformed": "The answer is 17"}

    def handler():
        for k, t in texts.items():
            out[k] = judge(t, {"answer": "17"}, "What is 12 + 5?", None)

    worker = threading.Thread(target=handler)
    worker.start()
    worker.join()
    assert out["right"].startswith("correct ✓") and out["equal"].startswith("correct ✓")
    assert out["wrong"].startswith("wrong ✗") and "format ✓" in out["wrong"]
    assert out["malformed"] == "correct ✓ · format ✗"  # last number counts, but not in the format


def test_chat_is_multi_turn_and_says_how_it_prompts(registry):
    app = Compare(AppConfig(runs_dir=str(registry)))
    assert app.prompting("t/base") == "prompted with: few-shot prompt (base model)"
    assert app.prompting("t/sft") == "prompted with: chat template"
    assert "outside the run registry" in app.prompting("/etc")
    # Gradio 6 hands the history back as content blocks
    history = [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}], "metadata": None},
               {"role": "assistant", "content": [{"type": "text", "text": "<answer>4</answer>"}]}]
    *_, last = app.chat("t/sft", "And 3 + 3?", history, temperature=0.0, max_tokens=12)
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant"]
    assert last[1]["content"] == "<answer>4</answer>" and last[2]["content"] == "And 3 + 3?"
    assert last[3]["content"].strip()
    *_, refused = app.chat("../../x", "hi", [])
    assert "outside the run registry" in refused[-1]["content"]


def test_a_missing_runs_dir_fails_before_serving(tmp_path):
    """`ladder app --runs_dir /nonexist` served an empty app with no word why."""
    from ladder.errors import LadderError

    with pytest.raises(LadderError, match=r"runs_dir '.*nonexist': no such folder"):
        Compare(AppConfig(runs_dir=str(tmp_path / "nonexist")))


LONG = "What is 12 + 5? " * 320  # ~5,000 characters: thousands of tokens, past the tiny models' 512


def test_a_prompt_past_the_context_is_refused_not_answered(registry):
    """A 5,000-character prompt was generated from anyway (the tiny models read 512 tokens): garbage answers,
    no warning, in Compare and Chat. Now no generation; the answer box says why, counting max_tokens."""
    from ladder.generation import build_prompt

    app = Compare(AppConfig(runs_dir=str(registry)))
    out = app.compare(["t/base", "t/sft"], LONG, max_tokens=64)
    for o in out:
        assert o["answer"].startswith("⚠️ prompt is ") and "this model reads at most 512 (with 64 new tokens)" \
            in o["answer"] and o["verdict"] == ""  # no reward, no RM score for an answer never given
    *_, last = app.chat("t/sft", LONG, [], max_tokens=64)
    assert "this model reads at most 512 (with 64 new tokens)" in last[-1]["content"]
    # a prompt that fits alone but not with the new tokens asked for: refused for 64, answered for 8
    _, tokenizer, _, _ = app.models.get("t/sft")
    k = next(k for k in range(1, 200) if len(tokenizer(build_prompt(tokenizer, "7 + 5 " * k, True),
                                                       add_special_tokens=False)["input_ids"]) > 512 - 64)
    prompt = "7 + 5 " * k
    n = len(tokenizer(build_prompt(tokenizer, prompt, True), add_special_tokens=False)["input_ids"])
    assert n + 8 <= 512
    assert app.compare(["t/sft"], prompt, max_tokens=64)[0]["answer"].startswith(f"⚠️ prompt is {n} tokens;")
    fits = app.compare(["t/sft"], prompt, max_tokens=8)[0]
    assert not fits["answer"].startswith("⚠️") and "format" in fits["verdict"]


def test_the_rm_score_never_scores_a_cut_off_answer(registry):
    """The reward model read the first 1,024 tokens: past a long prompt no answer was left, so every answer
    scored the same. Now the prompt's start goes; an answer too long to be read whole gets no number."""
    app = Compare(AppConfig(runs_dir=str(registry)))
    gold = {"answer": "17"}
    right = judge("<think>12 + 5 = 17. Glad to help!</think><answer>17</answer>", gold, LONG, app.reward_model)
    wrong = judge("<think>12 + 5 = 18. Ugh.</think><answer>18</answer>", gold, LONG, app.reward_model)
    rm = [re.search(r"RM score ([+-][\d.]+)", v).group(1) for v in (right, wrong)]
    assert rm[0] != rm[1]
    endless = judge("<answer>" + "17 " * 600 + "</answer>", gold, "What is 12 + 5?", app.reward_model)
    assert "RM score: prompt too long" in endless and not re.search(r"RM score [+-]", endless)


def test_chat_refuses_an_empty_message(registry, monkeypatch):
    """Chat answered an empty message (Compare refuses an empty prompt): now the model is not called, the
    user is told, and the notice is not fed back to the model as its turn."""
    import ladder.apps.compare as compare

    seen = []

    def fake_stream(models, name, prompt, *args):
        seen.append(prompt)
        yield "ok", True, "ok"

    monkeypatch.setattr(compare, "stream_answer", fake_stream)
    app = Compare(AppConfig(runs_dir=str(registry)))
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    for empty in ("", "  \n ", None):
        *_, last = app.chat("t/sft", empty, history)
        assert last[:2] == history and last[2:] == [{"role": "assistant", "content": "⚠️ type a message first"}]
    assert seen == []
    *_, last = app.chat("t/sft", "What is 2 + 2?", last)
    assert seen == [history + [{"role": "user", "content": "What is 2 + 2?"}]]


def test_compare_with_no_checkpoint_says_pick_one(registry):
    """With none picked, every box stayed as it was, no word why."""
    app = Compare(AppConfig(runs_dir=str(registry)))
    for names in ([], None):
        assert app.compare(names, "What is 1 + 1?") == [
            {"checkpoint": None, "answer": "pick at least one checkpoint", "verdict": ""}]
        assert list(app.stream(names, "")) == [(["pick at least one checkpoint"], [""])]
