"""Process-level setup shared by every stage: threads, seeds, device facts.

On CPU the biggest trap is oversubscription: two processes at the default thread count on 2 cores
ran a training step ~110x slower. So every launcher divides the cores between local processes.
"""

from __future__ import annotations

import os
import random


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
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_visible() and requested_engine() != "DEEPSPEED":
        os.environ.setdefault("ACCELERATE_USE_CPU", "1")


def process_group_kwargs() -> list:
    """kwargs_handlers for a bare `Accelerator()`: under DeepSpeed without CUDA, name the gloo backend.
    Without it accelerate gives each rank a world of 1 (DeepSpeed's process group exists, but
    accelerate only counts it when it was told a backend), and the ranks would train unconnected."""
    if requested_engine() != "DEEPSPEED" or _cuda_visible():
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


def say_rank(stage: str, accelerator, steps: int) -> None:
    """Every rank says it ran, in one world (a 2-process launch must show both lines); quiet alone."""
    if accelerator.num_processes > 1:
        print(f"{stage} rank {accelerator.process_index}/{accelerator.num_processes} ({engine_name(accelerator)}): "
              f"{steps} steps", flush=True)


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


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


def bf16_supported() -> bool:
    """bf16 only where the hardware has it: on these CPUs it is emulated and ~5x slower."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def cpu_training_defaults(args) -> None:
    """Call in a TRL/transformers config's __post_init__ *before* super().__post_init__().

    Without CUDA: train on the CPU in fp32. TRL configs default to bf16, which these CPUs only
    emulate (measured ~5x slower per step), so bf16 is turned off unless the user asked for it.
    """
    use_gloo_on_cpu()
    if has_cuda():
        return
    if getattr(args, "bf16", None) is None:
        args.bf16 = False
    if requested_engine() == "DEEPSPEED":
        # use_cpu would turn DeepSpeed off; without a backend accelerate sees a world of 1 on every rank
        if getattr(args, "ddp_backend", None) is None:
            args.ddp_backend = "gloo"
        if hasattr(args, "dataloader_pin_memory"):
            args.dataloader_pin_memory = False
    elif hasattr(args, "use_cpu"):
        args.use_cpu = True
