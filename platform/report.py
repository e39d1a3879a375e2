"""The report card: one row per rung, from the manifests, as markdown + JSON + PNG plots.

Training curves come from what each stage logged: its TensorBoard event files, else the trainer's
trainer_state.json log_history, else the `history` in its manifest (ladder's own loops).
"""

from __future__ import annotations

import json
from pathlib import Path

from ladder.evaluation import COMPLETIONS, HELDOUT
from ladder.generation import show_transcript
from ladder.manifest import atomic_write_json, atomic_write_text, read_manifest
from ladder.stages import ABSTAIN_COLUMNS, METRICS, RL_OUTPUTS, TOOL_COLUMNS, run_stages

CURVES = {"loss": ("train/loss", "loss"), "reward": ("ppo/reward", "train/reward", "reward")}
MAX_POINTS = 200  # per curve in report.json


def _thin(points: list) -> list:
    kept = points[::max(1, -(-len(points) // MAX_POINTS))]
    return kept if kept[-1] == points[-1] else kept + [points[-1]]


def _tensorboard_scalars(path: Path) -> dict[str, list]:
    files = sorted(path.rglob("events.out.tfevents.*"))
    if not files:
        return {}
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    scalars: dict[str, list] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def _log_history(path: Path) -> dict[str, list]:
    """The newest trainer_state.json's log_history (a TRL/transformers Trainer's own record)."""
    states = sorted(path.rglob("trainer_state.json"), key=lambda f: f.stat().st_mtime)
    if not states:
        return {}
    scalars: dict[str, list] = {}
    for entry in json.loads(states[-1].read_text()).get("log_history", []):
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)):
                scalars.setdefault(key, []).append((entry["step"], value))
    return scalars


def training_curves(path, history: list | None = None) -> dict[str, list]:
    """{"loss": [[step, value]], "reward": [...]} for one stage: each curve from the first source that
    has it (the manifest's own history, then TensorBoard, then trainer_state.json)."""
    path = Path(path)
    sources = [lambda: {k: [(h["step"], h[k]) for h in history or [] if k in h] for k in ("loss", "reward")},
               lambda: _tensorboard_scalars(path), lambda: _log_history(path)]
    curves: dict[str, list] = {}
    for source in sources:
        scalars = source()
        for name, tags in CURVES.items():
            pts = next((sorted(scalars[t]) for t in tags if scalars.get(t)), None)
            if pts and name not in curves:
                curves[name] = _thin([[int(s), round(float(v), 5)] for s, v in pts])
        if len(curves) == len(CURVES):
            break
    return curves


def stage_seconds(run) -> dict[str, float]:
    """Wall time per stage dir, as the pipeline recorded it."""
    f = Path(run) / "pipeline.json"
    return json.loads(f.read_text()).get("seconds", {}) if f.is_file() else {}


def collect(run) -> list[dict]:
    rows, seconds = [], stage_seconds(run)
    for stage, path in run_stages(run).items():
        if stage in ("data", "tokenizer", "probe"):  # data, not models
            continue
        m = read_manifest(path)
        metrics = dict(m.get("metrics", {}))
        if stage in seconds and not isinstance(metrics.get("seconds"), (int, float)):
            metrics["seconds"] = seconds[stage]
        curves = training_curves(path, m.get("history"))
        for key in ("accuracy", "rm_score", "judge/human_style", "think_length", "tool_call_rate"):
            if len(pts := series(metrics, m.get("history"), key)) > 1:
                curves[HELDOUT + key] = pts
        if stage == "grpo" and (pts := [[h["step"], h["completion_length"]] for h in m.get("history") or []
                                        if isinstance(h.get("completion_length"), (int, float))]):
            curves["completion_length"] = pts
        # TRL's tools/call_frequency (tool calls per completion) in a tool-calling GRPO's history
        if stage == "grpo" and (pts := [[h["step"], v] for h in m.get("history") or []
                                        if isinstance(v := h.get("tool_calls", h.get("tools/call_frequency")),
                                                      (int, float))]):
            curves["tool_calls"] = pts
        rows.append({"stage": stage, "path": str(path), "prompting": metrics.get("eval/prompting"),
                     "metrics": metrics, "curves": curves, "precision": m.get("precision")})
    return rows


def precision_line(rows: list[dict]) -> list[str]:
    """Which precision each rung trained in (ladder.precision, from its manifest), and why."""
    trained = [(r["stage"], p) for r in rows if (p := r.get("precision"))]
    if not trained:
        return []
    hardware = sorted({p["hardware"] for _, p in trained})
    return ["", "Trained in " + ", ".join(f"{stage} {p['train']}" for stage, p in trained)
            + f" ({'; '.join(hardware)})."]


def per_kind_table(rows: list[dict]) -> list[str]:
    """Held-out accuracy per kind of problem and rung, with standard errors and counts."""
    scored = [r for r in rows if isinstance(r["metrics"].get("eval/per_kind"), dict) and r["metrics"]["eval/per_kind"]]
    if not scored:
        return []
    kinds = sorted({k for r in scored for k in r["metrics"]["eval/per_kind"]})
    out = ["", "Held-out accuracy per kind of problem (± standard error, n problems):", "",
           "| rung | " + " | ".join(f"{k} (n={scored[0]['metrics']['eval/per_kind'].get(k, {}).get('n', '')})"
                                    for k in kinds) + " |", "|---|" + "---|" * len(kinds)]
    for r in scored:
        pk = r["metrics"]["eval/per_kind"]
        out.append(f"| {r['stage']} | " + " | ".join(_kind_cell(pk[k]) if k in pk else "" for k in kinds) + " |")
    return out


def _kind_cell(stats: dict) -> str:
    cell = f"{stats['accuracy']:.1%} ± {100 * stats['se']:.1f}"
    return cell + f" ({stats['abstain_rate']:.0%} abstain)" if stats.get("abstain_rate") else cell


# columns that describe the answers or the stage (sizes, a loss on each stage's own data, wall time),
# not rates compared between rungs: the caption does not ask for their standard errors
DESCRIPTIVE = ("length", "thinking", "eval loss", "time")


def column_notes(pass_n: int | None, n: int) -> dict[str, str]:
    """What each column of the table means, by column name (the caption shows those that have a value)."""
    sampled = ("all of those problems" if pass_n == n else f"the first {pass_n} of those problems only" if pass_n
               else "the first of those problems (how many is not recorded)")
    pass_note = f"`pass@1` and `pass@k` come from k samples per problem at temperature 1, on {sampled}"
    return {
        "format": "`format` is the share of answers in exactly the <think>…</think><answer>…</answer> shape",
        "RM score": "`RM score` is the reward model's mean score of the answers: it learnt what the preference pairs "
                    "reward (on the built-in data, the hidden human's taste, tone included), not correctness, so a "
                    "higher one is not better accuracy",
        "human": "`human` is the hidden preference rule's score of the answers' tone (-1 to 1; no trainer sees that rule)",
        "length": "`length` and `thinking` are the characters of the whole answer and of its <think> block",
        "pass@1": pass_note, "pass@k": pass_note,
        "eval loss": "`eval loss` is each stage's held-out loss on its own data (the base's on the pretraining corpus, "
                     "SFT's on held-out chats): not comparable between rows",
        "time": "`time` is the stage's wall time",
    }


def pass_k_problems(rows: list[dict]) -> int | None:
    """How many problems pass@k sampled, where every rung with pass@k agrees. Eval records no count (it samples
    the first `pass_k_limit`), but its reliability buckets hold those same problems, each one a reward scores
    in one bucket, so their sizes add up to it."""
    counts = {sum(b["n"] for b in r["metrics"].get("eval/reliability") or []) or None
              for r in rows if pass_k(r["metrics"])}
    return counts.pop() if len(counts) == 1 else None


def pass_k(metrics: dict) -> tuple[int, float] | None:
    """(k, pass@k) from an eval's metrics, whatever k it used."""
    for key, value in metrics.items():
        k = key.removeprefix("eval/pass@")
        if k != key and k.isdigit() and k != "1" and isinstance(value, (int, float)):  # not a pass@k_se
            return int(k), value
    return None


def _cell(metrics: dict, key: str, fmt: str) -> str:
    k = ""
    if key == "eval/pass@k":
        found = pass_k(metrics)
        if not found:
            return ""
        key, k = f"eval/pass@{found[0]}", f" (k={found[0]})"
    value = metrics.get(key)
    if not isinstance(value, (int, float)):
        return ""
    if key == "seconds":
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
    return fmt.format(value) + _spread(metrics.get(f"{key}_se"), fmt) + k


def _spread(se, fmt: str) -> str:
    """' ± se' where the stage recorded a standard error (rates in points, as the per-kind table does),
    else nothing: the caption says which columns have none, rather than the report inventing one."""
    if not isinstance(se, (int, float)) or isinstance(se, bool):
        return ""
    return f" ± {100 * se:.1f}" if "%" in fmt else " ± " + fmt.replace("+", "").format(se)


def series(metrics: dict, history: list | None, key: str, before: str | None = None) -> list:
    """[[step, value]] of one held-out metric along an RL run: the `before/` value at step 0, the
    per-step points its history recorded (`heldout_<key>`), the `after/` value at the last step."""
    pts = [[0, metrics[f"before/{before or key}"]]] if isinstance(metrics.get(f"before/{before or key}"), float) else []
    pts += [[h["step"], h[HELDOUT + key]] for h in history or [] if isinstance(h.get(HELDOUT + key), float)]
    if isinstance(metrics.get(f"after/{before or key}"), float) and isinstance(metrics.get("steps"), int):
        pts.append([metrics["steps"], metrics[f"after/{before or key}"]])
    return pts


def plot(rows: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    scored = [r for r in rows if isinstance(r["metrics"].get("eval/accuracy"), (int, float))]
    if scored:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([r["stage"] for r in scored], [100 * r["metrics"]["eval/accuracy"] for r in scored], color="#4c72b0",
               yerr=[100 * (r["metrics"].get("eval/accuracy_se") or 0) for r in scored], capsize=4)
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title("accuracy by rung")
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=100)
        plt.close(fig)
        files.append("accuracy.png")
    # RL losses are surrogate objectives near zero: the loss plot shows the supervised rungs only.
    for name, ylabel, title in (("reward", "mean reward", "reward while training (RL rungs)"),
                                ("loss", "training loss", "loss while training")):
        curves = [r for r in rows if r["curves"].get(name) and not (name == "loss" and r["stage"] in RL_OUTPUTS)]
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        for r in curves:
            ax.plot(*zip(*r["curves"][name]), label=r["stage"])
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}_curves.png", dpi=100)
        plt.close(fig)
        files.append(f"{name}_curves.png")
    files += rl_plots(rows, out, plt)
    files += reliability_plot(rows, out, plt)
    for stale in set(PLOTS) - set(files):
        (out / stale).unlink(missing_ok=True)  # the app shows every plot in the run dir
    return files


PLOTS = ["accuracy.png", "reward_curves.png", "loss_curves.png", "grpo_signatures.png", "pass_at_k.png",
         "ppo_rlhf.png", "reliability.png"]


# what a plot without an obvious reading shows, in the report right under it (as reliability_plot draws it)
PLOT_NOTES = {"reliability.png": (
    "Each point is one rung's bucket of the pass@k problems: x the bucket's mean share of right samples (k at T=1, "
    "the model's own confidence), y how often its greedy answer is right on them. On the dotted diagonal that "
    "confidence predicts accuracy, above it greedy beats sampling; the bottom-left buckets are what a model that "
    "knows its limits would abstain on.")}


def reliability_plot(rows: list[dict], out: Path, plt) -> list[str]:
    """Per rung, held-out problems bucketed by the model's sampled pass-rate (`ladder eval --pass_k`):
    greedy accuracy per bucket against the bucket's pass-rate. On the diagonal, a model's confidence
    (how often its samples are right) says how often its answer is; a model that knows what it does not
    know can abstain on the buckets at the bottom left."""
    curves = [(r["stage"], r["metrics"]["eval/reliability"]) for r in rows
              if isinstance(r["metrics"].get("eval/reliability"), list) and r["metrics"]["eval/reliability"]]
    if not curves:
        return []
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 100], [0, 100], color="grey", linestyle=":", label="calibrated")
    for stage, buckets in curves:
        ax.plot([100 * b["pass_rate"] for b in buckets], [100 * b["accuracy"] for b in buckets], marker="o",
                label=stage)
    ax.set_xlabel("sampled pass-rate of the problem (%)")
    ax.set_ylabel("greedy accuracy (%)")
    ax.set_title("confidence against accuracy (held-out)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    return ["reliability.png"]


def rl_plots(rows: list[dict], out: Path, plt) -> list[str]:
    """The signatures of each RL rung: GRPO's reward, held-out accuracy and completion length per step
    (as in the DeepSeek-R1 paper); pass@1 against pass@k per rung; PPO's reward-model score against
    the hidden human's on held-out prompts (they part where the policy starts fooling the RM)."""
    files, by = [], {r["stage"]: r for r in rows}
    grpo = by.get("grpo", {}).get("curves", {})
    panels = [(k, t) for k, t in (("reward", "training reward"), ("heldout_accuracy", "held-out accuracy"),
                                  ("completion_length", "completion length (tokens)")) if grpo.get(k)]
    tool_lines = [(k, label) for k, label in (("tool_calls", "calls per completion (training)"),
                                              ("heldout_tool_call_rate", "share calling (held-out)")) if grpo.get(k)]
    panels += [("tools", "tool calls")] if tool_lines else []
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3))
        for ax, (key, title) in zip([axes] if len(panels) == 1 else axes, panels):
            if key == "tools":
                for k, label in tool_lines:
                    ax.plot(*zip(*grpo[k]), marker="o" if k.startswith("heldout_") else None, label=label)
                ax.legend(fontsize="small")
            else:
                ax.plot(*zip(*grpo[key]), marker="o" if key == "heldout_accuracy" else None)
            ax.set_title(title)
            ax.set_xlabel("GRPO step")
        fig.tight_layout()
        fig.savefig(out / "grpo_signatures.png", dpi=100)
        plt.close(fig)
        files.append("grpo_signatures.png")
    sampled = [(r["stage"], r["metrics"]["eval/pass@1"], pass_k(r["metrics"])) for r in rows
               if isinstance(r["metrics"].get("eval/pass@1"), float) and pass_k(r["metrics"])]
    if sampled:
        fig, ax = plt.subplots(figsize=(5, 3))
        x = range(len(sampled))
        ax.bar([i - 0.2 for i in x], [100 * s[1] for s in sampled], width=0.4, label="pass@1")
        ax.bar([i + 0.2 for i in x], [100 * s[2][1] for s in sampled], width=0.4, label=f"pass@{sampled[0][2][0]}")
        ax.set_xticks(list(x), [s[0] for s in sampled])
        ax.set_ylabel("held-out (%)")
        ax.set_title("pass@1 against pass@k (samples at T=1)")
        _legend_below(fig, ax.get_legend_handles_labels())  # inside, it covers the tallest bars
        fig.savefig(out / "pass_at_k.png", dpi=100)
        plt.close(fig)
        files.append("pass_at_k.png")
    ppo = by.get("ppo", {}).get("curves", {})
    if ppo.get("heldout_rm_score") and ppo.get("heldout_judge/human_style"):
        fig, ax = plt.subplots(figsize=(5, 3))
        # Two y axes: the lines can lie on top of each other, so the human's is dashed with hollow, larger markers
        # (the RM's shows through) and a legend names them.
        ax.plot(*zip(*ppo["heldout_rm_score"]), marker="o", color="#4c72b0", label="reward model")
        ax.set_ylabel("reward-model score", color="#4c72b0")
        ax.set_xlabel("PPO step")
        twin = ax.twinx()
        twin.plot(*zip(*ppo["heldout_judge/human_style"]), marker="s", markersize=9, markerfacecolor="none",
                  linestyle="--", color="#dd8452", label="hidden human")
        twin.set_ylabel("hidden human's score", color="#dd8452")
        ax.set_title("PPO on held-out prompts: RM vs the human")
        (h1, l1), (h2, l2) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
        _legend_below(fig, (h1 + h2, l1 + l2))
        fig.savefig(out / "ppo_rlhf.png", dpi=100)
        plt.close(fig)
        files.append("ppo_rlhf.png")
    return files


def _legend_below(fig, handles_labels: tuple) -> None:
    """One row of legend under the plot, in room kept for it: it covers no bar or line, whatever their height."""
    fig.legend(*handles_labels, loc="lower center", ncol=len(handles_labels[1]), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))


def write_report(run) -> str:
    """Writes report.md, report.json and plots into the run dir; returns the markdown."""
    run = Path(run)
    rows = collect(run)
    abstains = any((r["metrics"].get("eval/abstain_rate") or 0) > 0 for r in rows)
    tooled = any(isinstance(r["metrics"].get("eval/tool_call_rate"), (int, float)) for r in rows)
    columns = [c for c in METRICS if (abstains or c[0] not in ABSTAIN_COLUMNS) and (tooled or c[0] not in TOOL_COLUMNS)]
    lines = [f"# ladder report card: {run.name}", "",
             "| rung | " + " | ".join(c[0] for c in columns) + " | prompted with |",
             "|---|" + "---|" * len(columns) + "---|"]
    for r in rows:
        cells = [_cell(r["metrics"], key, fmt) for _, key, fmt in columns]
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + f" | {r['prompting'] or ''} |")
    n = next((r["metrics"]["eval/n"] for r in rows if r["metrics"].get("eval/n")), None)
    if n:
        filled = [c[0] for c in columns if any(_cell(r["metrics"], c[1], c[2]) for r in rows)]
        bare = [c[0] for c in columns if c[0] in filled and c[0] not in DESCRIPTIVE and any(
            (cell := _cell(r["metrics"], c[1], c[2])) and "±" not in cell for r in rows)]
        lines += ["", f"Each model rung answers the same {n} held-out problems (greedy), scored by the rewards "
                  "training used; base models are prompted few-shot, chat models through their chat template. "
                  "The rm row is the reward model's pairwise accuracy on held-out preference pairs. "
                  "± is one standard error; a difference inside two of them is noise"
                  + (f"; none is recorded for {', '.join(f'`{c}`' for c in bare)}." if bare else ".")]
        notes = list(dict.fromkeys(note for name, note in column_notes(pass_k_problems(rows), n).items()
                                   if name in filled))  # pass@1 and pass@k share one
        lines += ["", "; ".join(notes) + "."] if notes else []
        if abstains:
            lines[-1] += (" `abstain` is the share of answers that are only \"I don't know\" "
                          "(ladder.rewards.abstained); `hallucination` the share wrong among the answers that are not.")
        if tooled:
            lines[-1] += (" Rungs trained with tools answer with them (the loop they were trained with) and are scored "
                          "on their final answer, never a tool's output: `tool calls` is the share of answers that "
                          "called one, `acc. (called)` / `acc. (no call)` accuracy among the answers that did / did "
                          "not, `no tools` the same rung's accuracy when offered none.")
    lines += precision_line(rows)
    lines += per_kind_table(rows)
    lines += comparisons(rows)
    images = plot(rows, run)
    lines += [""]
    for name in images:
        lines += [f"![{name}]({name})"] + (["", PLOT_NOTES[name], ""] if name in PLOT_NOTES else [])
    lines = lines[:-1] if lines[-1] == "" else lines
    samples = [(r["stage"], r["metrics"].get("eval/samples")) for r in rows]
    for stage, s in samples:
        if s:
            shown = show_transcript(s[0]["messages"]) if s[0].get("messages") else s[0]["completion"]
            lines += ["", f"**{stage}** on `{s[0]['prompt']}`:", "", "```", shown.strip(), "```"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run / "report.md", text)
    atomic_write_json(run / "report.json", {"run": run.name, "rows": rows})
    return text


# Rungs trained on the same data from the same SFT start by two methods: the report compares them.
PAIRS = [("ppo", "dpo", "the same preference pairs: PPO through the reward model, DPO on the pairs directly"),
         ("grpo", "rloo", "the same prompts and rewards: GRPO's group-normalised advantage, RLOO's leave-one-out")]


def paired_difference(a: Path, b: Path) -> tuple[float, float, int] | None:
    """(mean of b's score minus a's on the same held-out problems, its standard error, n) from the two
    rungs' eval_completions.jsonl: paired, so the problems' own difficulty cancels out."""
    def scores(path):
        f = Path(path) / COMPLETIONS
        if not f.is_file():
            return {}
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        return {r["prompt"]: float(r["score"] or 0.0) for r in rows}

    x, y = scores(a), scores(b)
    common = [p for p in x if p in y]
    if len(common) < 2:
        return None
    d = [y[p] - x[p] for p in common]
    mean = sum(d) / len(d)
    var = sum((v - mean) ** 2 for v in d) / (len(d) - 1)
    return mean, (var / len(d)) ** 0.5, len(d)


def _per_step(m: dict) -> float | None:
    """Seconds per training step: the trainer's own step times where the stage logged them (GRPO, RLOO:
    held-out curves excluded), else the stage's wall time over its steps."""
    if isinstance(m.get("seconds_per_step"), (int, float)):
        return m["seconds_per_step"]
    seconds, steps = m.get("seconds"), m.get("steps")
    return seconds / steps if isinstance(seconds, (int, float)) and isinstance(steps, int) and steps else None


def _at_step(row: dict, step: int) -> float | None:
    """Held-out accuracy of an RL rung at `step`, from its curve (the before/after points included)."""
    pts = dict((int(s), v) for s, v in row["curves"].get(HELDOUT + "accuracy", []))
    return pts.get(step)


def comparisons(rows: list[dict]) -> list[str]:
    """PPO against DPO and GRPO against RLOO, where a run has both: held-out accuracy (paired difference
    and its standard error), what the preference rungs were trained for (reward-model score, the hidden
    human), and time per training step."""
    by = {r["stage"]: r for r in rows}
    out = []
    for a, b, what in PAIRS:
        if a not in by or b not in by or "eval/accuracy" not in by[a]["metrics"] or "eval/accuracy" not in by[b]["metrics"]:
            continue
        ma, mb = by[a]["metrics"], by[b]["metrics"]
        line = [f"- **{b} vs {a}** ({what}): held-out accuracy {mb['eval/accuracy']:.1%} vs {ma['eval/accuracy']:.1%}"]
        diff = paired_difference(by[a]["path"], by[b]["path"])
        if diff:
            mean, se, n = diff
            verdict = "within the noise" if abs(mean) < 2 * se else ("higher" if mean > 0 else "lower")
            line.append(f"paired over {n} problems {100 * mean:+.1f} points (SE {100 * se:.1f}: {verdict})")
        for label, key, fmt in (("RM score", "eval/rm_score", "{:+.2f}"), ("human", "eval/judge/human_style", "{:+.2f}")):
            if isinstance(ma.get(key), (int, float)) and isinstance(mb.get(key), (int, float)):
                line.append(f"{label} {fmt.format(mb[key])} vs {fmt.format(ma[key])}")
        sa, sb = _per_step(ma), _per_step(mb)
        if sa and sb:
            line.append(f"{sb:.1f} vs {sa:.1f} s per step ({mb['steps']} vs {ma['steps']} steps)")
        steps = mb.get("steps")
        if by[a]["stage"] == "grpo" and isinstance(steps, int) and steps != ma.get("steps"):
            at = _at_step(by[a], steps)
            if at is not None:
                line.append(f"{a} at step {steps}: {at:.1%}")
        out.append("; ".join(line))
    return ["", "Two methods on the same data, from the same SFT model:", "", *out] if out else []


def load_report(run) -> dict:
    f = Path(run) / "report.json"
    return json.loads(f.read_text()) if f.is_file() else {}
