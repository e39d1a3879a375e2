"""Model FLOPs utilisation (MFU) for the benches: the matrix-multiply peak measured in the same run,
the model FLOPs a step does, and the ratio of the two.

    peak      = the best of torch.matmul(a, b) and torch.matmul(a, b.T) over a few square sizes n
                (2 n^3 FLOPs each), timed in this process, with its threads, on its device, for each precision
    achieved  = model FLOPs per token x tokens/s
    MFU       = achieved / peak (of the precision the step runs in)

Model FLOPs per token (PaLM, appendix B; nanoGPT's estimate_mfu): training 6 N + 12 L d s, with N the
parameters that take part in matrix products (an untied input embedding is a lookup, not counted),
L layers, d the width, s the sequence length (attention's QK^T and AV, forward + backward, the
causal half not subtracted). A forward pass alone is a third of that (2 N + 4 L d s).

Nothing heavy at import: torch is imported inside the functions, so planners that only import this
module (bench/gpu_check.py --dry-run) need no torch.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


# ---------------------------------------------------------------- the hardware

def cpu_flags() -> set[str]:
    from ladder.precision import cpu_flags

    return cpu_flags()


def cpu_bf16_native(flags: set[str] | None = None) -> bool:
    """Does the CPU multiply bf16 matrices in hardware (AMX-BF16 or AVX512-BF16)? Else torch emulates it.
    ladder.precision decides the stages' precision by the same flags."""
    from ladder.precision import bf16_flags

    return bool(bf16_flags(cpu_flags() if flags is None else flags))


def cpu_name() -> str:
    """The CPU's model name and the widest matrix instructions it has: the kinds this project runs on (AMD
    EPYC with AVX2 only or with AVX512-BF16, Intel Xeon with AMX-BF16) differ up to 50x in their bf16 peak
    (emulated, ~17 GFLOP/s, to native), so every bench header says which."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    isa = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else \
        "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} ({isa})"


def precision_note(device: str, dtype: str, flags: set[str] | None = None) -> str:
    """'native' / 'emulated' for a CPU precision; the GPU's name is said elsewhere."""
    if device != "cpu" or dtype == "fp32":
        return "native"
    if dtype == "bf16":
        return "native (AMX/AVX512-BF16)" if cpu_bf16_native(flags) else "emulated (no AMX/AVX512-BF16)"
    return "emulated"


# ---------------------------------------------------------------- the peak

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def matmul_flops(n: int, device: str = "cpu", dtype: str = "fp32", min_seconds: float = 0.3,
                 min_reps: int = 1, warmup: int = 1, layouts=("nn", "nt")) -> float:
    """FLOP/s of an n x n x n torch.matmul in `dtype` on `device`, timed for at least min_seconds per
    layout; the best layout counts. "nn" is a @ b, "nt" is a @ b.T (nn.Linear's layout). They differ a
    lot where bf16 is emulated: on an AVX2-only CPU (torch 2.13) a @ b in bf16 ran at ~0.6 GFLOP/s and
    a @ b.T at ~4.5, on one thread."""
    import torch

    dt = getattr(torch, DTYPES[dtype])
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for layout in layouts:
        rhs = b.t() if layout == "nt" else b
        for _ in range(warmup):
            torch.matmul(a, rhs)
        sync()
        reps, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, rhs)
            reps += 1
            if reps >= min_reps:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
        best = max(best, 2 * n ** 3 * reps / elapsed)
    return best


def measure_peaks(device: str = "cpu", dtypes=("fp32", "bf16"), sizes=(256, 512, 1024),
                  min_seconds: float = 0.3) -> dict:
    """{dtype: {"flops": best FLOP/s, "by_size": {n: FLOP/s}, "note": native/emulated}} for each precision,
    measured now, with this process's threads. On CUDA fp32 is plain fp32 (TF32 off) and said so."""
    import torch

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # "fp32" means fp32, not TF32
    flags = cpu_flags() if device == "cpu" else set()
    peaks = {}
    for dtype in dtypes:
        by_size = {}
        for n in sizes:
            by_size[n] = matmul_flops(n, device, dtype, min_seconds=min_seconds)
        peaks[dtype] = {"flops": max(by_size.values()), "by_size": by_size,
                        "note": precision_note(device, dtype, flags)}
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return peaks


def peaks_line(peaks: dict) -> str:
    """'fp32 420 GFLOP/s (native; best of n=256,512,1024), bf16 4.5 GFLOP/s (emulated ...)'."""
    return ", ".join(f"{d} {fmt_flops(p['flops'])} ({p['note']}; best of n={','.join(map(str, p['by_size']))})"
                     for d, p in peaks.items())


# ---------------------------------------------------------------- the model

def train_flops_per_token(n_matmul: int, n_layers: int, d_model: int, seq_len: float, attention: bool = True) -> float:
    """6 N + 12 L d s: one token's forward + backward (see the module docstring)."""
    return 6 * n_matmul + (12 * n_layers * d_model * seq_len if attention else 0)


def matmul_params(model) -> int:
    """N for the formula from a torch model: every parameter, less an untied input embedding."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if emb is not None and (out is None or out.weight is not emb.weight):
        total -= emb.weight.numel()
    return total


def safetensors_shapes(path: str | Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors file's header (no torch, nothing loaded)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def checkpoint_facts(folder: str | Path) -> dict:
    """params, matmul params (N), layers, width of an HF checkpoint folder, read from config.json and
    the safetensors headers alone (no torch): what the FLOPs formula needs."""
    import math

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    shapes = {}
    for f in sorted(folder.glob("*.safetensors")):
        shapes.update(safetensors_shapes(f))
    total = sum(math.prod(s) for s in shapes.values())
    embed = sum(math.prod(s) for k, s in shapes.items() if k.endswith("embed_tokens.weight"))
    tied = config.get("tie_word_embeddings", False) or not any(k.endswith("lm_head.weight") for k in shapes)
    return {"params": total, "matmul_params": total if tied else total - embed,
            "layers": config.get("num_hidden_layers"), "width": config.get("hidden_size")}


def fmt_flops(flops: float | None) -> str:
    """1.23e14 -> '123 TFLOP/s'; 4.2e11 -> '420 GFLOP/s'."""
    if flops is None:
        return "-"
    if flops >= 1e12:
        return f"{flops / 1e12:,.3g} TFLOP/s" if flops < 1e15 else f"{flops / 1e12:,.0f} TFLOP/s"
    return f"{flops / 1e9:,.3g} GFLOP/s"
