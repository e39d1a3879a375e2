from ladder.checkpoint import publish, staging
from ladder.manifest import read_manifest


def test_publish_keeps_training_checkpoints_and_writes_manifest_last(tmp_path):
    out = tmp_path / "sft"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "checkpoint-10" / "state").write_text("resume me")
    (out / "model.safetensors").write_text("old")
    with staging(out) as tmp:
        (tmp / "model.safetensors").write_text("new")
        (tmp / "config.json").write_text("{}")
        publish(tmp, out, stage="sft", parent="base", config={}, metrics={"loss": 1.0})
    assert (out / "checkpoint-10" / "state").read_text() == "resume me"
    assert (out / "model.safetensors").read_text() == "new"
    assert read_manifest(out)["metrics"] == {"loss": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]  # staging dir removed
