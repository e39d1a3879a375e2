"""The report card: one row per rung, from the manifests, as markdown + JSON + PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from ladder.manifest import atomic_write_json, atomic_write_text, read_manifest
from ladder.registry import run_stages

COLUMNS = [("accuracy", "eval/accuracy", "{:.1%}"), ("format", "eval/format_rate", "{:.1%}"),
           ("RM score", "eval/rm_score", "{:+.2f}"), ("length", "eval/mean_length", "{:.0f}"),
           ("pairwise acc.", "pairwise_accuracy", "{:.1%}"), ("eval loss", "eval_loss", "{:.3f}"),
           ("minutes", "seconds", "{:.1f}")]


def collect(run) -> list[dict]:
    rows = []
    for stage, path in run_stages(run).items():
        if stage in ("data", "tokenizer"):
            continue
        m = read_manifest(path)
        rows.append({"stage": stage, "path": str(path), "prompting": m["metrics"].get("eval/prompting"),
                     "metrics": m.get("metrics", {}), "history": m.get("history", [])})
    return rows


def _cell(metrics: dict, key: str, fmt: str) -> str:
    value = metrics.get(key)
    if key == "seconds" and isinstance(value, (int, float)):
        value = value / 60
    return fmt.format(value) if isinstance(value, (int, float)) else ""


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
    curves = [r for r in rows if r["history"]]
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3))
        for r in curves:
            pts = [(h["step"], h["reward"]) for h in r["history"] if "reward" in h]
            if pts:
                ax.plot(*zip(*pts), label=r["stage"])
        ax.set_xlabel("step")
        ax.set_ylabel("mean reward")
        ax.set_title("training reward")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "reward_curves.png", dpi=100)
        plt.close(fig)
        files.append("reward_curves.png")
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
