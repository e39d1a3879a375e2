import pytest

from ladder.errors import LadderError
from ladder.manifest import write_manifest
from ladder.registry import checkpoints, latest_run, main, resolve_checkpoint
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


def test_ladder_runs_lists_metrics(runs, capsys):
    assert main(["--root", str(runs)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["run", "stage", "accuracy"]
    assert [r.split()[:3] for r in rows] == [["a", "base", "50.0%"], ["a", "sft", "50.0%"], ["a", "rm", "50.0%"]]
