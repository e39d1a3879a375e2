import pytest

from ladder.errors import LadderError
from ladder.manifest import write_manifest
from ladder.registry import checkpoints, latest_run, main, resolve_checkpoint, resolve_run, table
from ladder.stages import run_stages


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for stage in ("base", "sft", "rm"):
        write_manifest(root / "a" / stage, stage=stage, config={}, metrics={"eval/accuracy": 0.5})
    (root / "a" / "grpo").mkdir()  # unfinished: no manifest
    return root


def test_stages_in_ladder_order_and_only_finished(runs):
    assert list(run_stages(runs / "a")) == ["base", "sft", "rm"]
    assert checkpoints(runs) == ["a/base", "a/sft"]
    assert latest_run(runs) == runs / "a"


def test_resolve_refuses_anything_outside_the_registry(runs, tmp_path):
    assert resolve_checkpoint("a/sft", runs) == (runs / "a" / "sft").resolve()
    outside = tmp_path / "elsewhere"
    write_manifest(outside, stage="sft", config={}, metrics={})
    for bad in (str(outside), "../elsewhere", "a/../../elsewhere", "/etc"):
        with pytest.raises(LadderError, match="outside the run registry"):
            resolve_checkpoint(bad, runs)
    with pytest.raises(LadderError, match="not a finished checkpoint"):
        resolve_checkpoint("a/grpo", runs)


def test_names_the_file_system_refuses_are_one_line_errors(runs):
    """The app passes what a user picked: no choice (None), the registry's root itself, a null byte, a name too
    long for the file system and a symlink loop all raised raw exceptions (TypeError, OSError, ...)."""
    (runs / "loop").symlink_to(runs / "loop")
    write_manifest(runs, stage="base", config={}, metrics={})  # even a manifest at the root: the root is no checkpoint
    for bad, msg in ((None, "no checkpoint chosen"), ("", "no checkpoint chosen"), (".", "outside the run registry"),
                     ("a\x00b", "not a usable checkpoint name"), ("x" * 5000, "not a usable checkpoint name"),
                     ("loop", "not a usable checkpoint name")):
        with pytest.raises(LadderError, match=msg):
            resolve_checkpoint(bad, runs)


def test_a_run_is_resolved_inside_the_registry_only(runs, tmp_path):
    assert resolve_run("a", runs) == (runs / "a").resolve()
    outside = tmp_path / "elsewhere"
    write_manifest(outside / "sft", stage="sft", config={}, metrics={})
    (runs / "link").symlink_to(outside)
    for bad in (str(outside), "../elsewhere", "link"):
        with pytest.raises(LadderError, match="outside the run registry"):
            resolve_run(bad, runs)
    with pytest.raises(LadderError, match="not a run"):
        resolve_run("a/grpo", runs)
    with pytest.raises(LadderError, match="not a usable run name"):
        resolve_run("x" * 5000, runs)


def test_ladder_runs_lists_metrics(runs, capsys):
    assert main(["--runs_dir", str(runs)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["run", "stage", "accuracy"]
    assert [r.split()[:3] for r in rows] == [["a", "base", "50.0%"], ["a", "sft", "50.0%"], ["a", "rm", "50.0%"]]


def test_a_stage_run_on_its_own_shows_its_own_figures(tmp_path, capsys):
    """A standalone `ladder grpo` records after/accuracy, an SFT run accuracy, neither eval/*: `ladder runs` showed
    their rows empty. Their own figures are shown, marked as not `ladder eval`'s."""
    root = tmp_path / "runs"
    write_manifest(root / "solo" / "sft", stage="sft", config={}, metrics={"accuracy": 0.3, "eval_loss": 0.2})
    write_manifest(root / "solo" / "grpo", stage="grpo", config={},
                   metrics={"before/accuracy": 0.1, "after/accuracy": 0.42, "after/format_rate": 1.0})
    write_manifest(root / "solo" / "ppo", stage="ppo", config={},
                   metrics={"after/accuracy": 0.2, "eval/accuracy": 0.25})  # eval's figure wins, unmarked
    header, *rows = table(root)
    cells = [dict(zip(header, r)) for r in rows]
    assert [(c["stage"], c["accuracy"], c["format"], c["eval loss"]) for c in cells] == [
        ("sft", "30.0%*", "", "0.200"), ("ppo", "25.0%", "", ""), ("grpo", "42.0%*", "100.0%*", "")]
    assert main(["--runs_dir", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("* the stage's own held-out figure")


def test_key_metric_prefers_eval_then_the_stages_own():
    from ladder.stages import key_metric

    assert key_metric({"eval/accuracy": 0.5, "accuracy": 0.4}) == ("eval/accuracy", 0.5)
    assert key_metric({"after/accuracy": 0.4, "eval_loss": 1.0}) == ("after/accuracy", 0.4)
    assert key_metric({"pairwise_accuracy": 0.8, "train_loss": 1.0}) == ("pairwise_accuracy", 0.8)
    assert key_metric({"eval_loss": 1.5}) == ("eval_loss", 1.5) and key_metric({"steps": 3}) is None


def test_a_missing_runs_dir_is_an_error_not_an_empty_registry(tmp_path, capsys):
    with pytest.raises(LadderError, match=r"runs_dir '.*nonexist': no such folder"):
        main(["--runs_dir", str(tmp_path / "nonexist")])
    (tmp_path / "empty").mkdir()
    assert main(["--runs_dir", str(tmp_path / "empty")]) == 0  # a folder with no runs yet is fine
    assert "no runs under" in capsys.readouterr().out


def test_runs_help_explains_runs_dir():
    from ladder.config import config_help
    from ladder.registry import RunsConfig

    line = next(x for x in config_help(RunsConfig).splitlines() if "--runs_dir" in x)
    assert "run registry" in line
