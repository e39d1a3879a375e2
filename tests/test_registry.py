import pytest

from ladder.errors import LadderError
from ladder.manifest import write_manifest
from ladder.registry import checkpoints, latest_run, main, resolve_checkpoint, resolve_run
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
    assert main(["--root", str(runs)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["run", "stage", "accuracy"]
    assert [r.split()[:3] for r in rows] == [["a", "base", "50.0%"], ["a", "sft", "50.0%"], ["a", "rm", "50.0%"]]
