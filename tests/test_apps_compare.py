"""The app's logic (no browser): side-by-side answers, rewards, registry-only loading."""

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
