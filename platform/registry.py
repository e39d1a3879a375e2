"""The run registry: `runs/<name>/<stage>/` holds each checkpoint and its ladder.json.

`ladder runs` prints a table of runs and stages with their key metrics. `resolve_checkpoint` and
`resolve_run` are the gates the app uses: only finished checkpoints and runs inside the runs folder are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option
from ladder.errors import LadderError
from ladder.manifest import MANIFEST, read_manifest
from ladder.stages import METRICS, RUNS_COLUMNS, TEXT_OUTPUTS, run_stages, stage_metric

RUNS_DIR_HELP = "the run registry: the folder `ladder run` writes runs into (a recipe's runs_dir)"


def runs_folder(runs_dir) -> Path:
    """The registry's folder, or a one-line LadderError: a mistyped folder must not pass for an empty registry."""
    path = Path(runs_dir).expanduser()
    if not path.is_dir():
        raise LadderError(f"runs_dir '{runs_dir}': no such folder (runs go where `ladder run` puts them: "
                          "ladder run recipes/tiny/ladder.yaml)")
    return path


def list_runs(root="runs") -> list[Path]:
    root = Path(root)
    runs = [p for p in root.iterdir() if p.is_dir() and run_stages(p)] if root.is_dir() else []
    return sorted(runs, key=lambda p: max((q / MANIFEST).stat().st_mtime for q in run_stages(p).values()))


def latest_run(root="runs") -> Path | None:
    runs = list_runs(root)
    return runs[-1] if runs else None


def checkpoints(root="runs", stages=TEXT_OUTPUTS) -> list[str]:
    """'run/stage' names of every finished model checkpoint, latest run first."""
    out = []
    for run in reversed(list_runs(root)):
        out += [f"{run.name}/{s}" for s, p in run_stages(run).items() if s in stages]
    return out


def resolve_checkpoint(name, root="runs") -> Path:
    """A 'run/stage' name (or a path) -> the checkpoint dir, refusing anything outside the registry."""
    path = _inside(name, root, "checkpoint")
    if not (path / MANIFEST).is_file():
        raise LadderError(f"'{name}' is not a finished checkpoint (no {MANIFEST})")
    return path


def resolve_run(name, root="runs") -> Path:
    """A run's name (or path) -> its folder, refusing anything outside the registry: what the app reads a
    run's report, plots, held-out problems and reward model from."""
    path = _inside(name, root, "run")
    if not run_stages(path):
        raise LadderError(f"'{name}' is not a run (no finished stage in it)")
    return path


def _inside(name, root, what: str) -> Path:
    """The resolved path (symlinks followed) strictly inside the registry's root, or a one-line LadderError
    (no name, a name the file system refuses, a symlink loop, anything outside)."""
    if not isinstance(name, (str, Path)) or not str(name).strip():
        raise LadderError(f"no {what} chosen")
    root = Path(root).resolve()
    try:
        candidate = Path(name)
        path = (candidate if candidate.is_absolute() else root / candidate).resolve()
        path.exists()  # a name too long raises here, not later in whatever reads the folder
    except (OSError, ValueError, RuntimeError) as e:  # a null byte, a name too long, a symlink loop
        raise LadderError(f"'{str(name)[:80]}' is not a usable {what} name ({type(e).__name__})") from None
    if root not in path.parents:
        raise LadderError(f"'{name}' is outside the run registry ({root}): refused")
    return path


KEY_METRICS = [m for m in METRICS if m[0] in RUNS_COLUMNS]


OWN = "*"  # marks a stage's own held-out figure, shown where `ladder eval` has not scored it
OWN_NOTE = f"{OWN} the stage's own held-out figure (SFT's, or RL's after training): not yet scored by `ladder eval`"


@dataclass
class RunsConfig:
    runs_dir: str = option("runs", RUNS_DIR_HELP)


def _cell(metrics: dict, key: str, fmt: str) -> str:
    """A column's number: `ladder eval`'s, else the stage's own (marked OWN), else blank."""
    found = stage_metric(metrics, key.removeprefix("eval/"))
    if found is None:
        return ""
    source, value = found
    return fmt.format(value) + (OWN if source != key else "")


def table(root="runs") -> list[list[str]]:
    """One row per finished stage of every run (oldest run first): run, stage, key metrics, date."""
    rows = [["run", "stage", *(c for c, _, _ in KEY_METRICS), "finished"]]
    for run in list_runs(root):
        for stage, path in run_stages(run).items():
            m = read_manifest(path)
            cells = [_cell(m.get("metrics", {}), key, fmt) for _, key, fmt in KEY_METRICS]
            rows.append([run.name, stage, *cells, str(m.get("created", "")).replace("T", " ")])
    return rows


def main(argv=None) -> int:
    cfg = load_config(RunsConfig, argv)
    rows = table(runs_folder(cfg.runs_dir))
    if len(rows) == 1:
        print(f"no runs under {cfg.runs_dir}/ (start one: ladder run recipes/tiny/ladder.yaml)")
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    if any(cell.endswith(OWN) for r in rows[1:] for cell in r):
        print(f"\n{OWN_NOTE}")
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
