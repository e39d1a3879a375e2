"""The precision every stage trains and samples in, decided here and nowhere else.

bf16 where the chips multiply in bf16: a CUDA GPU that supports it, or a CPU with AMX-BF16 or
AVX512-BF16 (Intel Xeon since Cooper/Sapphire Rapids, AMX: bf16 matmul peaks 6-8x the fp32 one; AMD EPYC
since Zen 4, AVX512-BF16: 4.5x on a 2-core Zen 5, 940 against 210 GFLOP/s, and the default ladder 3.9
minutes against 6.8 in fp32 (2 SFT epochs), with ladder.attention for its short sequences). Elsewhere
fp32: an AVX2-only CPU (the older AMD EPYC kind) only emulates bf16, and a training step of the tiny model
is 6-9x *slower* in it (bench/RESULTS.md, "Precision").

bf16 means mixed precision as transformers and accelerate do it: the weights and the optimizer stay in
fp32, the forward runs under bf16 autocast, checkpoints are saved in fp32. Rollouts follow the trainer:
HF generate runs inside the same autocast; ladder's vLLM engine runs in bf16 then, and GRPO turns TRL's
importance-sampling correction on, because the sampler is then no longer exactly the trained policy.

Who decides, first match wins:
  1. the recipe or command line: `bf16: true|false` (TRL stages, PPO), `mixed_precision:` (pretraining);
  2. the environment: LADDER_PRECISION=bf16|fp32|auto (the tests pin fp32, the precision their learning
     margins were measured in, so that they hold on both CPU kinds);
  3. the hardware (`native_bf16`).
The manifest records what was chosen and why (`precision` in ladder.json).
"""

from __future__ import annotations

import contextlib
import functools
import os

from ladder.errors import LadderError

ENV = "LADDER_PRECISION"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of this CPU (Linux); empty where /proc/cpuinfo is not to be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_flags(flags: set[str] | None = None) -> list[str]:
    """Which of the CPU's flags (default: this CPU's) say it multiplies bf16 in hardware."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in BF16_CPU_FLAGS if f in flags]


@functools.cache
def native_bf16() -> tuple[bool, str]:
    """(does this machine multiply in bf16 natively, why we think so)."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        if torch.cuda.is_bf16_supported():
            return True, f"GPU {name} has bf16"
        return False, f"GPU {name} has no bf16"
    found = bf16_flags()
    if found:
        return True, f"CPU has {' and '.join(found)}"
    return False, "CPU without bf16 instructions (bf16 would be emulated: slower)"


def choose(requested: bool | None = None) -> tuple[bool, str]:
    """(train in bf16?, why): what the recipe asked for, else LADDER_PRECISION, else the hardware."""
    if requested is not None:
        return bool(requested), "set in the recipe"
    env = env_choice()
    if env in ("bf16", "fp32"):
        return env == "bf16", f"{ENV}={env}"
    return native_bf16()


def env_choice() -> str:
    """LADDER_PRECISION, checked: bf16, fp32 or auto (ladder.runtime.run_main checks it before a stage
    starts, so a bad value is named as the environment's, not as a recipe's)."""
    env = os.environ.get(ENV, "auto").strip().lower()
    if env not in ("bf16", "fp32", "auto"):
        raise LadderError(f"environment variable {ENV}='{os.environ[ENV]}': must be bf16, fp32 or auto")
    return env


def record(config: dict) -> dict | None:
    """What a manifest says of a stage's precision, read from its resolved config (None for a stage that
    trains nothing): {"train": "bf16" | "fp16" | "fp32", "hardware": why the hardware says what it says}."""
    if config.get("fp16"):
        train = "fp16"
    elif "bf16" in config:
        train = "bf16" if config["bf16"] else "fp32"
    elif config.get("mixed_precision") in ("bf16", "fp16", "no"):
        train = {"no": "fp32"}.get(config["mixed_precision"], config["mixed_precision"])
    else:
        return None
    env = os.environ.get(ENV)
    return {"train": train, "hardware": native_bf16()[1], **({ENV: env} if env else {})}


@contextlib.contextmanager
def cast_once(enabled: bool, device_type: str = "cpu"):
    """One bf16 autocast region around many forward passes of unchanged weights, so each weight is cast to
    bf16 once for all of them instead of once per pass.

    accelerate wraps a mixed-precision model's `forward` in its own autocast, and autocast drops its cache of
    cast weights whenever its outermost region ends: generating 64 tokens casts every weight 64 times.
    Inside an enclosing region the per-forward ones are nested, the cache lives until this one ends, and the
    casts are the very same ones, so the numbers are too (greedy and sampled tokens identical; SmolLM2-135M,
    32 rollouts x 64 tokens: 8.73 s -> 6.68 s, bench/RESULTS.md). Only where no gradient is taken: a cached
    cast shared by several chunks would sum their bf16 gradients in bf16."""
    if not enabled:
        yield
        return
    import torch

    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield
