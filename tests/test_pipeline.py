"""The whole ladder on the micro recipe: every rung, a report from real evaluation, and re-runs
that skip what is done."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ladder import pipeline
from ladder.errors import LadderError
from ladder.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipe")
    recipe = yaml.safe_load((ROOT / "recipes" / "micro" / "ladder.yaml").read_text())
    recipe["runs_dir"] = str(work / "runs")
    path = work / "ladder.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, work / "runs" / "micro"


@pytest.mark.slow
def test_micro_ladder_end_to_end_then_skips_then_reruns_changed(micro, capsys):
    recipe, run = micro
    assert pipeline.main([str(recipe)]) == 0
    first = capsys.readouterr().out
    for stage in ("data", "tokenizer", "base", "sft", "rm", "ppo", "grpo"):
        assert (run / stage / "ladder.json").is_file(), stage
    assert read_manifest(run / "sft")["parent"] == str(run / "base")
    assert read_manifest(run / "ppo")["config"]["reward_model"] == str(run / "rm")
    report = json.loads((run / "report.json").read_text())
    stages = [r["stage"] for r in report["rows"]]
    assert stages[:3] == ["base", "sft", "rm"]
    for row in report["rows"]:
        if row["stage"] in ("base", "sft", "ppo", "grpo"):
            assert row["metrics"]["eval/n"] == 8  # rows come from real evaluation of 8 held-out problems
            assert "eval/accuracy" in row["metrics"]
    assert "| sft |" in (run / "report.md").read_text() and (run / "accuracy.png").is_file()
    assert "ladder app" in first

    stamps = {s: (run / s / "model.safetensors").stat().st_mtime for s in ("base", "sft", "grpo")}
    assert pipeline.main([str(recipe)]) == 0
    second = capsys.readouterr().out
    assert second.count("up to date, skipped") == 7
    assert all((run / s / "model.safetensors").stat().st_mtime == t for s, t in stamps.items())  # not retrained

    cfg = yaml.safe_load(recipe.read_text())
    cfg["grpo"]["max_steps"] = 3
    recipe.write_text(yaml.safe_dump(cfg))
    assert pipeline.main([str(recipe)]) == 0
    third = capsys.readouterr().out
    assert third.count("up to date, skipped") == 6 and "grpo      running" in third
    assert read_manifest(run / "grpo")["metrics"]["steps"] == 3


def test_unknown_section_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruns_dir: " + str(tmp_path / "runs") + "\npretrian: {max_steps: 3}\n")
    with pytest.raises(LadderError, match="unknown section 'pretrian'"):
        pipeline.main([str(bad)])
    assert not (tmp_path / "runs").exists()
