"""The whole ladder on the micro recipe: every rung, a report from real evaluation, and re-runs
that skip what is done."""

import json
import time
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
    # a section may also be the path of that stage's own recipe (relative to the ladder recipe)
    (work / "data.yaml").write_text(yaml.safe_dump(recipe["data"]))
    recipe["data"] = "data.yaml"
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

    assert (run / "reward_curves.png").is_file()  # from the RL stages' logged rewards
    assert report["rows"][stages.index("grpo")]["curves"]["reward"]
    first_seconds = json.loads((run / "pipeline.json").read_text())["seconds"]

    stages = ("data", "tokenizer", "base", "sft", "rm", "ppo", "grpo")
    stamps = {p: p.stat().st_mtime_ns for s in stages for p in (run / s).glob("*") if p.is_file()}
    t0 = time.time()
    assert pipeline.main([str(recipe)]) == 0
    second = capsys.readouterr().out
    assert second.count("up to date, skipped") == 8  # seven stages and the eval
    assert "| sft |" in second  # the report is still printed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no weights nor manifests touched
    assert time.time() - t0 < sum(first_seconds.values()) / 3

    # a changed stage re-runs, with the stages that read what it made (none read PPO's), and the eval;
    # GRPO comes after PPO but starts from SFT: it stays
    assert pipeline.main([str(recipe), "--ppo.max_steps", "3"]) == 0
    third = capsys.readouterr().out
    assert third.count("up to date, skipped") == 6
    assert "ppo       running" in third and "grpo      up to date" in third and "eval      scoring" in third
    assert read_manifest(run / "ppo")["metrics"]["steps"] == 3
    model = run / "sft" / "model.safetensors"
    assert model.stat().st_mtime_ns == stamps[model]  # SFT comes before PPO: not retrained


def test_unknown_section_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruns_dir: " + str(tmp_path / "runs") + "\npretrian: {max_steps: 3}\n")
    with pytest.raises(LadderError, match="unknown section 'pretrian'"):
        pipeline.main([str(bad)])
    assert not (tmp_path / "runs").exists()


def test_a_stage_recipe_given_to_ladder_run_names_the_stage_command():
    """`ladder run recipes/smollm2/grpo.yaml` said "unknown section 'beta'"; it is one stage's recipe."""
    for path, stage in (("recipes/smollm2/grpo.yaml", "grpo"), ("recipes/tiny/rloo.yaml", "rloo"),
                        ("recipes/tiny/rm.yaml", "rm")):
        with pytest.raises(LadderError, match=f"the recipe of one stage, not of a ladder: ladder {stage} --config "):
            pipeline.main([str(ROOT / path), "--dry_run"])


def test_a_typo_in_any_stage_section_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nruns_dir: " + str(tmp_path / "runs") + "\ngrpo: {max_step: 3}\n")
    with pytest.raises(LadderError, match="section 'grpo': unknown key 'max_step'.*did you mean 'max_steps'"):
        pipeline.main([str(bad)])
    bad.write_text("name: x\nruns_dir: " + str(tmp_path / "runs") + "\n")
    with pytest.raises(LadderError, match="section 'eval': unknown key 'limt'"):
        pipeline.main([str(bad), "--eval.limt", "3"])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, message", [
    (["--grpo.max_steps", "abc"], "section 'grpo': config key 'max_steps': expected an integer, got 'abc'"),
    (["--ppo.rewards", "[nofile.py:fn]"], "section 'ppo': reward 'nofile.py:fn': file nofile.py not found"),
    (["--eval.judge", "[nofile.py:fn]"], "section 'eval': judge 'nofile.py:fn': file nofile.py not found"),
    (["--grpo.tools", "[nope]"], "section 'grpo': tool 'nope': unknown built-in"),
    (["--sft.data", "/no/such/chats.jsonl"], "section 'sft': data '/no/such/chats.jsonl': no such file or folder"),
    (["--ppo.reward_model", "runs/elsewhere/rm"], "section 'ppo': reward_model 'runs/elsewhere/rm': no such"),
    (["--sft.recipe", "nope.yaml"], r"nope.yaml: recipe file not found \(looked for .*nope.yaml and .*nope.yaml\)"),
])
def test_a_bad_value_plugin_or_path_in_any_section_fails_before_any_work(tmp_path, override, message):
    """Not only key names: every section builds its stage's config, loads the functions it names and finds
    the local paths it points at outside the run, before the first rung (a wrong type in GRPO's section
    used to fail after pretraining)."""
    recipe = tmp_path / "ladder.yaml"
    recipe.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "recipes" / "micro" / "ladder.yaml").read_text()),
                                      "runs_dir": str(tmp_path / "runs")}))
    with pytest.raises(LadderError, match=message):
        pipeline.main([str(recipe), *override])
    assert not (tmp_path / "runs").exists()


def test_dry_run_checks_and_prints_each_rung_and_writes_nothing(tmp_path, capsys):
    """`--dry_run` says what each rung would do with the command it would run (quoted, so it can be pasted),
    and creates nothing; a mistake still fails as in a real run."""
    import shlex

    recipe = tmp_path / "ladder.yaml"
    recipe.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "recipes" / "micro" / "ladder.yaml").read_text()),
                                      "runs_dir": str(tmp_path / "runs")}))
    assert pipeline.main([str(recipe), "--dry_run", "--grpo.max_steps", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    grpo = next(line for line in lines if line.startswith("[7/8] grpo      would run: ladder grpo "))
    argv = shlex.split(grpo.partition("ladder grpo ")[2])
    assert argv[argv.index("--max_steps") + 1] == "3" and argv[argv.index("--model") + 1].endswith("micro/sft")
    assert lines[-2].startswith("[8/8] eval      would run: ladder eval --run") and "nothing was run" in lines[-1]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(LadderError, match="section 'grpo': config key 'max_steps'"):
        pipeline.main([str(recipe), "--dry_run", "--grpo.max_steps", "x"])
    with pytest.raises(LadderError, match="--dry_run takes true or false"):
        pipeline.main([str(recipe), "--dry_run", "maybe"])


def test_a_key_the_section_sets_wins_over_the_parent_output(tmp_path):
    """`sft: {data: my_chats.jsonl}` trains on that file, not on the run's data (it used to be replaced in
    silence); a stage recipe's value is replaced by the parent's output unless that parent is skipped; and a
    stage re-runs with a parent only if it reads that parent's output."""
    from ladder.pipeline import parents, plan

    run = tmp_path / "run"
    (tmp_path / "sft.yaml").write_text("model: org/hub-model\ndata: org/hub-chats\nmax_steps: 3\n")
    steps = {s[0].name: s for s in plan({"sft": {"recipe": "sft.yaml", "data": "my_chats.jsonl"}}, run, tmp_path)}
    sft = steps["sft"]
    assert sft[2]["data"] == "my_chats.jsonl" and sft[2]["model"] == str(run / "base")
    assert parents(sft[0], sft[2], run) == {"base"}
    assert parents(steps["grpo"][0], steps["grpo"][2], run) == {"sft", "data"}
    skipped = {s[0].name: s for s in plan({"pretrain": {"skip": True}, "sft": {"recipe": "sft.yaml"}}, run,
                                          tmp_path)}
    assert skipped["sft"][2]["model"] == "org/hub-model" and skipped["sft"][2]["data"] == str(run / "data")
    assert parents(skipped["sft"][0], skipped["sft"][2], run) == {"data"}


def test_optional_rung_runs_only_when_the_recipe_names_it(tmp_path):
    """DPO is an extra rung: without a `dpo` section (or with `skip: true`) the ladder is planned without
    it; a section, even one key set from the command line, puts it in its place in ladder order."""
    from ladder.pipeline import apply_overrides, plan
    from ladder.stages import STAGES

    run = tmp_path / "run"

    def names(recipe):
        return [step[0].name for step in plan(recipe, run)]

    assert "dpo" in {s.name for s in STAGES if s.optional}
    assert names({}) == [s.name for s in STAGES if not s.optional]
    assert names({"dpo": {"skip": True}}) == names({})
    assert names({"dpo": {"beta": 0.2}}) == [s.name for s in STAGES if not s.optional or s.name == "dpo"]
    assert names(apply_overrides({}, {"dpo.beta": 0.2})) == names({"dpo": {}})
    step = next(s for s in plan({"dpo": {"beta": 0.2}}, run) if s[0].name == "dpo")
    assert step[2] == {"beta": 0.2, "model": str(run / "sft"), "data": str(run / "data"),
                       "output_dir": str(run / "dpo")}
