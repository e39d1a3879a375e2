"""The report card: one row per rung, from the manifests, as markdown + JSON + PNG plots.

Training curves come from what each stage logged: its TensorBoard event files, else the trainer's
trainer_state.json log_history, else the `history` in its manifest (ladder's own loops).
"""

from __future__ import annotations

import json
from pathlib import Path

from ladder.manifest import atomic_write_json, atomic_write_text, read_manifest
from ladder.registry import run_stages

COLUMNS = [("accuracy", "eval/accuracy", "{:.1%}"), ("format", "eval/format_rate", "{:.1%}"),
           ("RM score", "eval/rm_score", "{:+.2f}"), ("length", "eval/mean_length", "{:.0f}"),
           ("pairwise acc.", "pairwise_accuracy", "{:.1%}"), ("eval loss", "eval_loss", "{:.3f}"),
           ("time", "seconds", None)]


CURVES = {"loss": ("train/loss", "loss"), "reward": ("ppo/reward", "train/reward", "reward")}
MAX_POINTS = 200  # per curve in report.json
RL = ("ppo", "grpo")


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
        if stage in ("data", "tokenizer"):
            continue
        m = read_manifest(path)
        metrics = dict(m.get("metrics", {}))
        if stage in seconds and not isinstance(metrics.get("seconds"), (int, float)):
            metrics["seconds"] = seconds[stage]
        rows.append({"stage": stage, "path": str(path), "prompting": metrics.get("eval/prompting"),
                     "metrics": metrics, "curves": training_curves(path, m.get("history"))})
    return rows


def _cell(metrics: dict, key: str, fmt: str) -> str:
    value = metrics.get(key)
    if not isinstance(value, (int, float)):
        return ""
    if key == "seconds":
        return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
    return fmt.format(value)


def plot(rows: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    scored = [r for r in rows if isinstance(r["metrics"].get("eval/accuracy"), (int, float))]
    if scored:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([r["stage"] for r in scored], [100 * r["metrics"]["eval/accuracy"] for r in scored], color="#4c72b0")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title("accuracy by rung")
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=100)
        plt.close(fig)
        files.append("accuracy.png")
    # RL losses are surrogate objectives near zero: the loss plot shows the supervised rungs only.
    for name, ylabel, title in (("reward", "mean reward", "reward while training (RL rungs)"),
                                ("loss", "training loss", "loss while training")):
        curves = [r for r in rows if r["curves"].get(name) and not (name == "loss" and r["stage"] in RL)]
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
    for stale in {"accuracy.png", "reward_curves.png", "loss_curves.png"} - set(files):
        (out / stale).unlink(missing_ok=True)  # the app shows every plot in the run dir
    return files


def write_report(run) -> str:
    """Writes report.md, report.json and plots into the run dir; returns the markdown."""
    run = Path(run)
    rows = collect(run)
    lines = [f"# ladder report card: {run.name}", "",
             "| rung | " + " | ".join(c[0] for c in COLUMNS) + " | prompted with |",
             "|---|" + "---|" * len(COLUMNS) + "---|"]
    for r in rows:
        cells = [_cell(r["metrics"], key, fmt) for _, key, fmt in COLUMNS]
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + f" | {r['prompting'] or ''} |")
    n = next((r["metrics"]["eval/n"] for r in rows if r["metrics"].get("eval/n")), None)
    if n:
        lines += ["", f"Each model rung answers the same {n} held-out problems (greedy), scored by the rewards "
                  "training used; base models are prompted few-shot, chat models through their chat template. "
                  "The rm row is the reward model's pairwise accuracy on held-out preference pairs."]
    images = plot(rows, run)
    lines += [""] + [f"![{name}]({name})" for name in images]
    samples = [(r["stage"], r["metrics"].get("eval/samples")) for r in rows]
    for stage, s in samples:
        if s:
            lines += ["", f"**{stage}** on `{s[0]['prompt']}`:", "", "```", s[0]["completion"].strip(), "```"]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run / "report.md", text)
    atomic_write_json(run / "report.json", {"run": run.name, "rows": rows})
    return text


def load_report(run) -> dict:
    f = Path(run) / "report.json"
    return json.loads(f.read_text()) if f.is_file() else {}
