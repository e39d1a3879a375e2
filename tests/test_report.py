"""The report card: a row per rung from the manifests, curves from whatever each stage logged."""

import json
from pathlib import Path

from ladder.manifest import atomic_write_json, write_manifest
from ladder.report import training_curves, write_report


def test_report_rows_curves_and_plots(tmp_path):
    run = tmp_path / "r"
    write_manifest(run / "data", stage="data", config={})
    write_manifest(run / "base", stage="pretrain", config={"mixed_precision": "no"}, metrics={
        "eval/accuracy": 0.25, "eval/format_rate": 0.0, "eval/n": 8, "eval/prompting": "few-shot"})
    write_manifest(run / "rm", stage="rm", config={}, metrics={"pairwise_accuracy": 0.875})
    write_manifest(run / "grpo", stage="grpo", config={"bf16": True}, metrics={
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
    assert next(x for x in lines if x.startswith("Trained in ")).startswith("Trained in base fp32, grpo bf16 (")
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


def test_abstain_columns_and_reliability_plot_appear_only_with_their_data(tmp_path):
    run = tmp_path / "r"
    buckets = [{"lo": 0.0, "hi": 0.2, "n": 30, "pass_rate": 0.05, "accuracy": 0.1},
               {"lo": 0.8, "hi": 1.0, "n": 10, "pass_rate": 0.9, "accuracy": 0.8}]
    write_manifest(run / "sft", stage="sft", config={}, metrics={
        "eval/accuracy": 0.2, "eval/format_rate": 1.0, "eval/abstain_rate": 0.0, "eval/hallucination_rate": 0.8,
        "eval/n": 40})
    write_manifest(run / "probe", stage="probe", config={}, metrics={"known": 3, "unknown": 5})  # data: no row
    text = write_report(run)
    assert "abstain" not in text and "hallucination" not in text  # nobody abstains: no empty columns
    assert "| sft | 20.0% | 100.0% |" in text and "| probe |" not in text
    assert not (run / "reliability.png").exists()  # no pass@k samples, no plot

    kinds = {"2-digit *": {"accuracy": 0.1, "se": 0.05, "n": 20, "abstain_rate": 0.6,
                           "hallucination_rate": 0.75}}
    write_manifest(run / "grpo", stage="grpo", config={}, metrics={
        "eval/accuracy": 0.25, "eval/format_rate": 1.0, "eval/abstain_rate": 0.5, "eval/hallucination_rate": 0.5,
        "eval/n": 40, "eval/per_kind": kinds, "eval/reliability": buckets})
    text = write_report(run)
    assert "| rung | accuracy | format | RM score | human | length | thinking | abstain | hallucination |" in text
    assert "| sft | 20.0% | 100.0% |  |  |  |  | 0.0% | 80.0% |" in text
    assert "| grpo | 25.0% | 100.0% |  |  |  |  | 50.0% | 50.0% |" in text
    assert "| grpo | 10.0% ± 5.0 (60% abstain) |" in text
    assert (run / "reliability.png").read_bytes()[:4] == b"\x89PNG" and "![reliability.png](reliability.png)" in text


def test_two_methods_on_the_same_data_are_compared_paired(tmp_path):
    """PPO vs DPO and GRPO vs RLOO: accuracy on the same problems as a paired difference with its SE (a gap
    inside two SEs is called noise), the preference scores, seconds per step, GRPO's curve at RLOO's steps."""
    run = tmp_path / "r"

    def rung(name, right, **metrics):
        write_manifest(run / name, stage=name, config={}, metrics={"eval/accuracy": sum(right) / len(right),
                                                                    "eval/n": len(right), **metrics},
                       history=metrics.pop("history", None))
        rows = [{"prompt": f"q{i}", "completion": "", "score": float(r)} for i, r in enumerate(right)]
        (run / name / "eval_completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    base = [1] * 10 + [0] * 30
    rung("ppo", base, **{"eval/rm_score": 1.3, "eval/judge/human_style": 1.0, "seconds": 80.0, "steps": 40})
    rung("dpo", base[:38] + [1, 1], **{"eval/rm_score": 0.2, "eval/judge/human_style": 0.5, "seconds": 30.0,
                                        "steps": 100})  # two more right out of 40: noise
    write_manifest(run / "grpo", stage="grpo", config={}, metrics={
        "eval/accuracy": 0.9, "eval/n": 40, "seconds_per_step": 3.0, "steps": 60, "before/accuracy": 0.25,
        "after/accuracy": 0.9}, history=[{"step": 20, "heldout_accuracy": 0.6}, {"step": 40, "heldout_accuracy": 0.8}])
    (run / "grpo" / "eval_completions.jsonl").write_text("".join(
        json.dumps({"prompt": f"q{i}", "score": 1.0 if i < 36 else 0.0}) + "\n" for i in range(40)))
    rung("rloo", [1] * 12 + [0] * 28, **{"seconds_per_step": 2.5, "steps": 20})

    text = write_report(run)
    ppo_dpo = next(x for x in text.splitlines() if x.startswith("- **dpo vs ppo**"))
    assert "30.0% vs 25.0%" in ppo_dpo and "+5.0 points" in ppo_dpo and "within the noise" in ppo_dpo
    assert "RM score +0.20 vs +1.30" in ppo_dpo and "human +0.50 vs +1.00" in ppo_dpo
    assert "0.3 vs 2.0 s per step" in ppo_dpo
    grpo_rloo = next(x for x in text.splitlines() if x.startswith("- **rloo vs grpo**"))
    assert "-60.0 points" in grpo_rloo and "lower" in grpo_rloo  # 24 of 40 fewer: far outside the noise
    assert "2.5 vs 3.0 s per step (20 vs 60 steps)" in grpo_rloo and "grpo at step 20: 60.0%" in grpo_rloo


def test_tool_columns_and_curve_appear_only_with_tool_evals(tmp_path):
    """A rung evaluated with tools gets `no tools`, `tool calls`, `acc. (called)` and `acc. (no call)`; a ladder
    without any gets none of them. GRPO's tool calls per step (TRL's tools/call_frequency, and the held-out
    share calling) join its signature plot; a sample's tool calls are shown inline."""
    run = tmp_path / "r"
    write_manifest(run / "sft", stage="sft", config={}, metrics={"eval/accuracy": 0.2, "eval/format_rate": 1.0,
                                                                 "eval/n": 40})
    text = write_report(run)
    assert "tool calls" not in text and "no tools" not in text and "acc. (called)" not in text
    messages = [{"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "47 * 38"}}}]},
                {"role": "tool", "name": "calculator", "content": "1786"},
                {"role": "assistant", "content": "<answer> 1786</answer>"}]
    write_manifest(run / "grpo", stage="grpo", config={"tools": ["calculator"]}, metrics={
        "eval/accuracy": 0.5, "eval/accuracy_se": 0.08, "eval/format_rate": 1.0, "eval/n": 40,
        "eval/tool_call_rate": 0.75, "eval/accuracy_with_tool": 0.6, "eval/accuracy_without_tool": 0.2,
        "eval/accuracy_no_tools": 0.25, "eval/accuracy_no_tools_se": 0.07, "before/tool_call_rate": 0.0,
        "after/tool_call_rate": 0.75, "steps": 20,
        "eval/samples": [{"prompt": "What is 47 * 38?", "completion": "<answer> 1786</answer>", "score": 1.0,
                          "messages": messages}]},
        history=[{"step": 10, "reward": 0.3, "tool_calls": 0.5}, {"step": 20, "reward": 0.6, "tool_calls": 1.2},
                 {"step": 10, "heldout_tool_call_rate": 0.4}])
    text = write_report(run)
    assert "| rung | accuracy | no tools | tool calls | acc. (called) | acc. (no call) | format |" in text
    assert "| grpo | 50.0% ± 8.0 | 25.0% ± 7.0 | 75.0% | 60.0% | 20.0% | 100.0% |" in text
    assert "| sft | 20.0% |  |  |  |  | 100.0% |" in text
    assert "🔧 calculator(47 * 38) → 1786\n<answer> 1786</answer>" in text
    rows = {r["stage"]: r for r in json.loads((run / "report.json").read_text())["rows"]}
    assert rows["grpo"]["curves"]["tool_calls"] == [[10, 0.5], [20, 1.2]]
    assert rows["grpo"]["curves"]["heldout_tool_call_rate"] == [[0, 0.0], [10, 0.4], [20, 0.75]]
    assert (run / "grpo_signatures.png").read_bytes()[:4] == b"\x89PNG"


def _evaluated(run, name, reliability_n=None, **metrics):
    buckets = [{"lo": 0.0, "hi": 0.5, "n": reliability_n // 2, "pass_rate": 0.2, "accuracy": 0.3},
               {"lo": 0.5, "hi": 1.0, "n": reliability_n - reliability_n // 2, "pass_rate": 0.8, "accuracy": 0.9}] \
        if reliability_n else None
    write_manifest(run / name, stage=name, config={}, metrics={
        "eval/accuracy": 0.5, "eval/accuracy_se": 0.035, "eval/format_rate": 1.0, "eval/n": 200,
        "eval/prompting": "chat template", **({"eval/reliability": buckets} if buckets else {}), **metrics})


def test_caption_states_the_pass_at_k_problems_and_explains_every_column(tmp_path):
    """pass@ samples only the first `pass_k_limit` problems: the caption gives that n (the reliability buckets'
    sizes, which hold the same problems), and says what format, RM score, eval loss and time are."""
    run = tmp_path / "r"
    write_manifest(run / "base", stage="pretrain", config={}, metrics={
        "eval/accuracy": 0.05, "eval/n": 200, "eval_loss": 0.56, "seconds": 700.0, "eval/rm_score": -2.5})
    for name in ("sft", "grpo"):
        _evaluated(run, name, 100, **{"eval/pass@1": 0.3, "eval/pass@8": 0.75, "eval/rm_score": -1.1})
    text = write_report(run)
    assert "same 200 held-out problems" in text and "on the first 100 of those problems only" in text
    assert "`format` is the share of answers in exactly the <think>…</think><answer>…</answer> shape" in text
    assert "`RM score` is the reward model's mean score" in text and "not better accuracy" in text
    assert "`eval loss` is each stage's held-out loss on its own data" in text and "not comparable" in text
    assert "`time` is the stage's wall time" in text

    _evaluated(run, "grpo", 200, **{"eval/pass@1": 0.3, "eval/pass@8": 0.75})  # the rungs disagree: no n
    assert "on the first of those problems (how many is not recorded)" in write_report(run)
    _evaluated(run, "sft", 200, **{"eval/pass@1": 0.3, "eval/pass@8": 0.75})
    assert "on all of those problems" in write_report(run)


def test_standard_errors_are_shown_where_recorded_and_their_absence_said(tmp_path):
    """RM score, pass@ and pairwise accuracy get ± where the stage recorded a standard error; where none is,
    the caption names the columns instead of the report inventing one."""
    run = tmp_path / "r"
    _evaluated(run, "sft", 100, **{"eval/pass@1": 0.3, "eval/pass@8": 0.75, "eval/rm_score": -1.1})
    write_manifest(run / "rm", stage="rm", config={}, metrics={"pairwise_accuracy": 0.85})
    text = write_report(run)
    assert "none is recorded for `format`, `RM score`, `pass@1`, `pass@k`, `pairwise acc.`." in text
    _evaluated(run, "sft", 100, **{"eval/pass@1": 0.3, "eval/pass@1_se": 0.02, "eval/pass@8": 0.75,
                                   "eval/pass@8_se": 0.043, "eval/rm_score": -1.1, "eval/rm_score_se": 0.05,
                                   "eval/format_rate_se": 0.0})
    write_manifest(run / "rm", stage="rm", config={}, metrics={"pairwise_accuracy": 0.85,
                                                               "pairwise_accuracy_se": 0.025})
    text = write_report(run)
    assert "| sft | 50.0% ± 3.5 | 100.0% ± 0.0 | -1.10 ± 0.05 |" in text
    assert "| 30.0% ± 2.0 | 75.0% ± 4.3 (k=8) |" in text and "| 85.0% ± 2.5 |" in text
    assert "none is recorded" not in text


def test_reliability_plot_is_explained_under_it(tmp_path):
    run = tmp_path / "r"
    _evaluated(run, "sft", 40, **{"eval/pass@1": 0.3, "eval/pass@8": 0.75})
    lines = write_report(run).splitlines()
    after = lines[lines.index("![reliability.png](reliability.png)") + 1:]
    note = next(x for x in after if x)
    assert "x the bucket's mean share of right samples" in note and "y how often its greedy answer is right" in note
    assert "dotted diagonal" in note


def test_plot_legends_name_both_ppo_lines_and_cover_no_bar(tmp_path, monkeypatch):
    """ppo_rlhf.png: the RM's and the human's lines can coincide, so a legend names both and they differ in
    style; pass_at_k.png: the legend overlaps none of the bars, tall ones included."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figures, save = {}, Figure.savefig

    def keep(fig, fname, *args, **kwargs):
        save(fig, fname, *args, **kwargs)
        figures[Path(fname).name] = fig

    monkeypatch.setattr(Figure, "savefig", keep)
    run = tmp_path / "r"
    for name, p1, p8 in (("sft", 0.3, 0.75), ("grpo", 0.42, 0.86), ("rloo", 0.53, 0.93)):  # where it covered one
        _evaluated(run, name, 100, **{"eval/pass@1": p1, "eval/pass@8": p8})
    write_manifest(run / "ppo", stage="ppo", config={}, metrics={
        "before/rm_score": -1.0, "after/rm_score": 1.0, "before/judge/human_style": 0.0,
        "after/judge/human_style": 1.0, "steps": 20},
        history=[{"step": 10, "heldout_rm_score": 1.0, "heldout_judge/human_style": 1.0}])
    write_report(run)

    ppo = figures["ppo_rlhf.png"]
    legends = ppo.legends + [a.get_legend() for a in ppo.axes if a.get_legend()]
    assert [t.get_text() for lg in legends for t in lg.get_texts()] == ["reward model", "hidden human"]
    rm, human = (a.get_lines()[0] for a in ppo.axes)
    assert rm.get_linestyle() != human.get_linestyle() and human.get_markerfacecolor() == "none"  # RM's shows through

    bars = figures["pass_at_k.png"]
    renderer = FigureCanvasAgg(bars).get_renderer()  # pyplot left it a bare canvas on closing it
    legend = (bars.legends + [a.get_legend() for a in bars.axes if a.get_legend()])[0].get_window_extent(renderer)
    assert not any(legend.overlaps(p.get_window_extent(renderer)) for p in bars.axes[0].patches)
