import os

import pytest

from ladder.errors import LadderError
from ladder.manifest import (atomic_dir, atomic_write_text, has_manifest, read_manifest, update_metrics,
                             write_manifest)


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path, monkeypatch):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "good")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_text(f, "half")
    assert f.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text("2")
            raise RuntimeError("killed")
    assert (target / "x").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_manifest_round_trip_and_metrics_update(tmp_path):
    write_manifest(tmp_path, stage="sft", parent="runs/a/base", config={"lr": 1}, metrics={"loss": 2.0})
    assert has_manifest(tmp_path)
    update_metrics(tmp_path, {"accuracy": 0.5})
    m = read_manifest(tmp_path)
    assert m["stage"] == "sft" and m["parent"] == "runs/a/base"
    assert m["metrics"] == {"loss": 2.0, "accuracy": 0.5}


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(LadderError, match="no ladder.json"):
        read_manifest(tmp_path)
