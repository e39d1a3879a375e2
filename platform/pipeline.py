"""`ladder run recipes/tiny/ladder.yaml`: climb the whole ladder, then print the report card.

data -> tokenizer -> pretrain -> SFT -> reward model -> (DPO) -> PPO -> GRPO -> (RLOO) -> eval, each stage
reading its parents (Stage.inputs in ladder.stages) from their outputs under runs/<name>/. A stage whose
checkpoint is finished, was made with the same settings and whose parents were not made again is skipped,
so a re-run resumes instead of starting over and a changed stage re-runs only what reads from it; a stage
with trainer checkpoints but no manifest is resumed. Stages run in this process by calling the same
`main(argv)` that `ladder <stage>` and `accelerate launch -m ladder.<stage>` run.

Recipe: `name`, `runs_dir`, then one section per stage holding that stage's own config keys
(optionally `recipe: path.yaml` to start from a stage recipe, or just `sft: path.yaml`). A missing
section means defaults, except for the optional rungs (DPO, RLOO), which run only when their section is
there; `skip: true` leaves a stage out. `--sft.max_steps 50` overrides one key; `--dry_run` checks the
recipe and prints what each rung would do (skip, run or resume, with its arguments), running nothing. A
parent's key that a section sets itself (`sft: {data: my_chats.jsonl}`) wins over the parent's output;
one that comes from a stage recipe file gives way to it, unless that parent is skipped.

Before the first rung, every section is checked as its stage will read it: its config is built (names,
types, the config's own checks), the reward, judge and tool functions it names are loaded, and a local
model, tokenizer or data path outside the run must exist; the first mistake is one line naming the recipe
and the section.

Why in-process: every stage already cleans up after itself (accelerate state is reset between
stages here), the thread settings are set once, and `accelerate launch -m ladder.pipeline` then
runs every stage on the processes it started. Finished stages are remembered in
runs/<name>/pipeline.json (the arguments each ran with and its wall time).
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

from ladder.config import build_config, read_yaml
from ladder.errors import LadderError
from ladder.manifest import MANIFEST, atomic_write_json, read_manifest
from ladder.runtime import reset_accelerate
from ladder.stages import STAGES, key_metric

META = {"name", "runs_dir", "eval"} | {s.name for s in STAGES}


def stage_args(section: dict, run: Path, out: str, inputs: dict, here: Path = Path("."),
               skipped: frozenset = frozenset()) -> dict:
    """A stage's config keys: its recipe file, the section's own keys over it, and its parents' outputs in
    this run. A key the section sets itself (`sft: {data: my_chats.jsonl}`) wins over the parent's output;
    a parent the recipe skips leaves the stage recipe's value, if it has one."""
    args = dict(section)
    base = args.pop("recipe", None)
    from_file = {}
    if base:  # relative to the working directory, else to the ladder recipe's folder
        tried = [Path(base).absolute()] if Path(base).is_absolute() else [Path(base).absolute(), here / base]
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise LadderError(f"{base}: recipe file not found (looked for {' and '.join(map(str, tried))})")
        from_file = read_yaml(found)
        args = {**from_file, **args}
    args.pop("skip", None)
    args.update({key: str(run / src) for key, src in inputs.items()
                 if key not in section and not (src in skipped and key in from_file)})
    args["output_dir"] = str(run / out)
    return args


def parents(stage, args: dict, run: Path) -> set[str]:
    """The output dirs of this run that a stage really reads (a key the recipe pointed elsewhere is not one)."""
    return {src for key, src in stage.inputs.items() if args.get(key) == str(run / src)}


def to_argv(args: dict) -> list[str]:
    argv = []
    for key, value in args.items():
        argv += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return argv


def plan(recipe: dict, run: Path, here: Path = Path(".")) -> list[tuple]:
    """(stage, its output dir, its config keys) for every rung the recipe does not skip (and every optional
    rung it names), in ladder order."""
    unknown = set(recipe) - META
    if unknown:
        raise LadderError(f"pipeline recipe: unknown section '{sorted(unknown)[0]}' (sections: "
                          f"{', '.join(s.name for s in STAGES)}, eval)")
    steps, skipped = [], set()  # a parent comes before the stages that read it (STAGES is in ladder order)
    for stage in STAGES:
        name, out = stage.name, stage.output
        if stage.optional and name not in recipe:  # an extra rung (DPO, RLOO): only when the recipe asks for it
            continue
        section = recipe.get(name) or {}
        if isinstance(section, str):  # `sft: recipes/tiny/sft.yaml`
            section = {"recipe": section}
        if not isinstance(section, dict):
            raise LadderError(f"pipeline recipe: section '{name}' must be a mapping of that stage's keys "
                              "or the path of its recipe file")
        if section.get("skip"):
            skipped.add(out)
            continue
        steps.append((stage, run / out, stage_args(section, run, out, stage.inputs, here, frozenset(skipped))))
    return steps


def stage_recipe_of(recipe: dict) -> list[str]:
    """The stages whose config takes every key of `recipe`: a stage's recipe given to `ladder run` (called
    only when a key is no section, as it imports every stage)."""
    from ladder.config import _field_names

    return [stage.name for stage in STAGES
            if set(recipe) <= _field_names(getattr(importlib.import_module(stage.module), stage.config))]


def check_sections(steps, eval_args: dict, source: str = "pipeline recipe") -> None:
    """A mistake in the last stage's section must fail now, not after an hour of the stages before it:
    every section builds its stage's config (names, types and the config's own checks) and loads the
    reward, judge and tool functions it names."""
    from ladder.eval import EvalConfig

    for stage, _, args in steps + [(None, None, eval_args)]:
        cls = getattr(importlib.import_module(stage.module), stage.config) if stage else EvalConfig
        where = f"{source}, section '{stage.name if stage else 'eval'}'"
        cfg = build_config(cls, dict(args), where)
        try:
            load_plugins(cfg)
        except LadderError as e:
            raise LadderError(f"{where}: {e}") from None


def load_plugins(cfg) -> None:
    if getattr(cfg, "rewards", None):
        from ladder.rewards import load_rewards

        load_rewards(cfg.rewards)
    if getattr(cfg, "judge", None):
        from ladder.evaluation import load_judges

        load_judges(cfg.judge)
    if getattr(cfg, "tools", None):
        from ladder.tools import load_tools

        load_tools(cfg.tools)


def check_inputs(steps, run: Path, source: str = "pipeline recipe") -> None:
    """A model, tokenizer or data path a section names outside this run must exist before the climb starts
    (hub ids are not checked: they load, or fail, when their stage runs)."""
    from ladder.data.loaders import looks_local

    keys = {key for stage in STAGES for key in stage.inputs} | {"test_data"}
    for stage, _, args in steps:
        for key in sorted(keys & set(args)):
            value = args[key]
            if (isinstance(value, str) and looks_local(value) and not Path(value).expanduser().exists()
                    and run not in Path(value).parents):
                raise LadderError(f"{source}, section '{stage.name}': {key} '{value}': no such file or folder")


MAIN = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`: one progress log, one writer


def say(*args) -> None:
    if MAIN:
        print(*args, flush=True)


def _key_metric(out: Path) -> str:
    found = key_metric(read_manifest(out).get("metrics", {}))
    return f"{found[0].removeprefix('eval/')} {found[1]:.3f}" if found else "-"


def apply_overrides(recipe: dict, overrides: dict) -> dict:
    """`--name x` sets a top-level key, `--sft.max_steps 5` one key of a stage section."""
    for key, value in overrides.items():
        section, dot, field = key.partition(".")
        if not dot:
            recipe[key] = value
            continue
        current = recipe.get(section) or {}
        recipe[section] = {**({"recipe": current} if isinstance(current, str) else current), field: value}
    return recipe


def load_state(run: Path) -> dict:
    """What already ran: {"stages": {stage: args}, "seconds": {dir: s}, "eval": ...}."""
    f = run / "pipeline.json"
    state = json.loads(f.read_text()) if f.is_file() else {}
    if "stages" not in state:  # first format: {stage: args}
        state = {"stages": state}
    state.setdefault("seconds", {})
    return state


def run_pipeline(recipe_path: str, overrides: dict | None = None, dry_run: bool = False) -> Path:
    """Climb; with `dry_run`, check every section and say what each rung would do (skip, run, resume, with
    the arguments it would get), then stop before the first one."""
    recipe = apply_overrides(read_yaml(recipe_path), overrides or {})
    stages = stage_recipe_of(recipe) if set(recipe) - META else []
    if stages:
        stem = Path(recipe_path).stem
        raise LadderError(f"{recipe_path}: the recipe of one stage, not of a ladder: ladder "
                          f"{stem if stem in stages else ' / '.join(stages)} --config {recipe_path}")
    run = Path(recipe.get("runs_dir", "runs")) / str(recipe.get("name", Path(recipe_path).stem))
    steps = plan(recipe, run, Path(recipe_path).parent)
    eval_args = {"run": str(run), **(recipe.get("eval") or {})}
    check_sections(steps, eval_args, recipe_path)
    check_inputs(steps, run, recipe_path)
    state_file = run / "pipeline.json"
    state = load_state(run)
    if not dry_run:
        run.mkdir(parents=True, exist_ok=True)
    total, rerun = time.time(), set()  # the output dirs (re)made by this run
    n = len(steps) + 1
    for i, (stage, out, args) in enumerate(steps, 1):
        name = stage.name
        done = (out / MANIFEST).is_file() and state["stages"].get(name) == args
        if done and not rerun & parents(stage, args, run):
            say(f"[{i}/{n}] {name:<9} up to date, skipped  {_key_metric(out)}")
            continue
        rerun.add(stage.output)  # the stages that read it run again (their parent changed); the others need not
        argv = to_argv(args)
        has_ckpts = out.is_dir() and (any(out.glob("checkpoint-*")) or (out / "checkpoints").is_dir())
        if not (out / MANIFEST).is_file() and has_ckpts and name not in ("data", "tokenizer"):
            argv += ["--resume", "true"]
        if dry_run:
            say(f"[{i}/{n}] {name:<9} would {'resume' if '--resume' in argv else 'run'}: ladder {name} "
                f"{shlex.join(argv)}")
            continue
        say(f"[{i}/{n}] {name:<9} running -> {out}")
        t0 = time.time()
        reset_accelerate()
        code = importlib.import_module(stage.module).main(argv)
        if code:
            raise LadderError(f"stage {name} failed (exit {code})")
        state["stages"][name] = args
        state["seconds"][out.name] = round(time.time() - t0, 1)
        if MAIN:
            atomic_write_json(state_file, state)
        say(f"[{i}/{n}] {name:<9} done in {time.time() - t0:5.0f}s  {_key_metric(out)}")
    # Eval writes into every model's manifest: when nothing changed, the report it wrote stands.
    evaluated = {"args": eval_args, "stages": [s[0].name for s in steps]}
    fresh = not rerun and state.get("eval") == evaluated and (run / "report.md").is_file()
    if dry_run:
        say(f"[{n}/{n}] eval      " + ("up to date, would be skipped" if fresh else
                                      f"would run: ladder eval {shlex.join(to_argv(eval_args))}"))
        say(f"ladder: dry run of {run}, every section checked; nothing was run or written")
        return run
    if fresh:
        say(f"[{n}/{n}] eval      up to date, skipped")
        say((run / "report.md").read_text())
    else:
        say(f"[{n}/{n}] eval      scoring every rung on held-out problems")
        t0 = time.time()
        reset_accelerate()
        code = importlib.import_module("ladder.eval").main(to_argv(eval_args))
        if code:
            raise LadderError(f"eval failed (exit {code})")
        state["eval"] = evaluated
        state["seconds"]["eval"] = round(time.time() - t0, 1)
        if MAIN:
            atomic_write_json(state_file, state)
        say(f"[{n}/{n}] eval      done in {time.time() - t0:5.0f}s  report: {run / 'report.md'}")
    say(f"ladder: {run} done in {(time.time() - total) / 60:.1f} min. Open the app: ladder app --run {run}")
    return run


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from ladder.config import HELP_FLAGS, _parse_value, parse_overrides

    if any(arg in HELP_FLAGS for arg in argv):  # the recipe's sections are each stage's: see `ladder <stage> --help`
        print(__doc__.strip())
        return 0

    if argv and not argv[0].startswith("--"):
        argv = ["--config", *argv]
    path, overrides = parse_overrides(argv)
    if not path:
        raise LadderError("usage: ladder run recipes/tiny/ladder.yaml [--name other] [--dry_run]")
    dry_run = _parse_value(overrides.pop("dry_run", "false"))
    if not isinstance(dry_run, bool):
        raise LadderError(f"command line: --dry_run takes true or false, got '{dry_run}'")
    run_pipeline(path, overrides, dry_run)
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
