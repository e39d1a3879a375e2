"""Process-level setup shared by every stage: threads, seeds, device facts.

On CPU the biggest trap is oversubscription: two processes at the default thread count on 2 cores
ran a training step ~110x slower. So every launcher divides the cores between local processes.
"""

from __future__ import annotations

import os
import random


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


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
