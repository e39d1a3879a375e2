"""The app's logic (no browser): side-by-side answers, rewards, registry-only loading."""

import shutil

import pytest

from ladder.apps.compare import AppConfig, Compare, gold_for


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


def test_gold_answers_for_typed_and_held_out_prompts():
    assert gold_for("What is 17 * 24?", {}) == {"answer": "408"}
    assert gold_for("p", {"p": {"answer": None, "numbers": [1], "target": 1}})["target"] == 1
    assert gold_for("Tell me a story", {}) == {}


def test_app_binds_to_localhost_by_default():
    assert AppConfig().host == "127.0.0.1"
