"""The report card: a row per rung from the manifests, curves from whatever each stage logged."""

import json

from ladder.manifest import atomic_write_json, write_manifest
from ladder.report import training_curves, write_report


def test_report_rows_curves_and_plots(tmp_path):
    run = tmp_path / "r"
    write_manifest(run / "data", stage="data", config={})
    write_manifest(run / "base", stage="pretrain", config={}, metrics={
        "eval/accuracy": 0.25, "eval/format_rate": 0.0, "eval/n": 8, "eval/prompting": "few-shot"})
    write_manifest(run / "rm", stage="rm", config={}, metrics={"pairwise_accuracy": 0.875})
    write_manifest(run / "grpo", stage="grpo", config={}, metrics={
        "eval/accuracy": 0.5, "eval/format_rate": 1.0, "eval/n": 8, "eval/prompting": "chat template"},
        history=[{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.4}])
    # a TRL stage's own record: trainer_state.json in its checkpoint dir
    log = [{"step": 2, "loss": 0.7}, {"step": 4, "loss": 0.5}, {"step": 4, "train_loss": 0.6}]
    atomic_write_json(run / "rm" / "checkpoint-4" / "trainer_state.json", {"log_history": log})
    atomic_write_json(run / "pipeline.json", {"stages": {}, "seconds": {"base": 200.0}})
    (run / "loss_curves.png").write_bytes(b"stale")

    text = write_report(run)
    lines = text.splitlines()
    assert "| base | 25.0% | 0.0% |" in text and "| 3.3 min | few-shot |" in text  # minutes from pipeline.json
    assert next(x for x in lines if x.startswith("| rm |")).count("87.5%") == 1
    assert "| grpo | 50.0% | 100.0% |" in text and "8 held-out problems" in text
    rows = {r["stage"]: r for r in json.loads((run / "report.json").read_text())["rows"]}
    assert list(rows) == ["base", "rm", "grpo"]
    assert rows["grpo"]["curves"] == {"reward": [[1, 0.1], [2, 0.4]]}
    assert rows["rm"]["curves"] == {"loss": [[2, 0.7], [4, 0.5]]}
    for png in ("accuracy.png", "reward_curves.png", "loss_curves.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG", png  # the stale file was replaced


def test_curves_from_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "logs" / "pretrain"))
    for step in range(1, 501):
        writer.add_scalar("train/loss", 5.0 / step, step)
    writer.close()
    curves = training_curves(tmp_path)
    assert list(curves) == ["loss"]
    loss = curves["loss"]
    assert len(loss) <= 201 and loss[0] == [1, 5.0] and loss[-1] == [500, 0.01]  # thinned, ends kept


def test_report_shows_errors_kinds_pass_at_k_and_the_rl_signatures(tmp_path):
    run = tmp_path / "r"
    kinds = {"2-digit +": {"accuracy": 0.5, "se": 0.1, "n": 20}, "2-digit *": {"accuracy": 0.25, "se": 0.1, "n": 20}}
    write_manifest(run / "sft", stage="sft", config={}, metrics={
        "eval/accuracy": 0.375, "eval/accuracy_se": 0.0766, "eval/per_kind": kinds, "eval/n": 40,
        "eval/pass@1": 0.2, "eval/pass@8": 0.6, "eval/judge/human_style": 0.05})
    write_manifest(run / "grpo", stage="grpo", config={}, metrics={
        "eval/accuracy": 0.7, "eval/accuracy_se": 0.07, "eval/per_kind": kinds, "eval/n": 40,
        "eval/pass@1": 0.65, "eval/pass@8": 0.8, "before/accuracy": 0.375, "after/accuracy": 0.7, "steps": 20},
        history=[{"step": 10, "reward": 0.3, "completion_length": 20.0}, {"step": 20, "reward": 0.7,
                                                                         "completion_length": 40.0},
                 {"step": 10, "heldout_accuracy": 0.5}])
    write_manifest(run / "ppo", stage="ppo", config={}, metrics={
        "before/rm_score": 1.0, "after/rm_score": 2.0, "before/judge/human_style": 0.05,
        "after/judge/human_style": 0.8, "steps": 20},
        history=[{"step": 10, "reward": 1.0, "heldout_rm_score": 1.5, "heldout_judge/human_style": 0.5}])
    text = write_report(run)
    assert "| sft | 37.5% ± 7.7 |" in text and "| 60.0% (k=8) |" in text and "| +0.05 |" in text
    assert "| rung | 2-digit * (n=20) | 2-digit + (n=20) |" in text and "| grpo | 25.0% ± 10.0 | 50.0% ± 10.0 |" in text
    rows = {r["stage"]: r for r in json.loads((run / "report.json").read_text())["rows"]}
    assert rows["grpo"]["curves"]["heldout_accuracy"] == [[0, 0.375], [10, 0.5], [20, 0.7]]
    assert rows["grpo"]["curves"]["completion_length"] == [[10, 20.0], [20, 40.0]]
    assert rows["ppo"]["curves"]["heldout_judge/human_style"] == [[0, 0.05], [10, 0.5], [20, 0.8]]
    for png in ("grpo_signatures.png", "pass_at_k.png", "ppo_rlhf.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG" and f"![{png}]({png})" in text, png
