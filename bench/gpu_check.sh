#!/usr/bin/env bash
# ladder's GPU check: pretraining MFU of a ~124M model (gpt2-124m preset) in bf16, one SFT, GRPO (HF rollouts)
# and PPO step each in bf16 (a few steps each, the steady step timed), and FSDP on one GPU, against the bf16
# torch.matmul peak measured in the same run. Prints one table; a failing row says why in one line and the
# others still run. The rows and how each is measured: bench/gpu_check.py's docstring.
#
# ---------------------------------------------------------------- how to run it through the device tool
# The GPU image has torch, transformers (5.17), accelerate, peft, tensorboard, pyarrow, pandas, ... but not
# TRL, datasets, math-verify (nor vLLM, which the check does not use), and cannot reach PyPI. So:
#
# 1. Here, once, in the repo root (.whl/ is in .gitignore), fetch the wheels (about 15 MB):
#
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#        -d .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 math-verify==0.9.0 \
#        latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 transformers==5.19.0 peft==0.21.2
#
#    (transformers and peft at ladder's pins, since the image's differ; keep one version of each in .whl.
#    If the preflight below shows pyarrow < 24 or fsspec > 2026.9.0 there, add pyarrow==26.0.1 /
#    fsspec==2026.9.0 too: datasets 5.2 needs them; pyarrow's wheel is ~45 MB, the tree limit is 64 MiB.)
#
# 2. Then one call of the device tool's `run`:
#
#      command:   bash bench/gpu_check.sh
#      carry:     [".whl"]
#      timeout_s: 600
#
#    It installs the wheels and ladder itself (from this tree, into /tmp), prints a preflight (GPU, versions),
#    runs every row within a budget of 480 s (each row also has its own timeout), prints the table and writes
#    gpu_check.md, gpu_check.json, gpu_check.log and logs.tar.gz (every step's full log) to $OUT.
#    Expect ~5-6 minutes on an H200. Arguments pass through to gpu_check.py, e.g.
#      bash bench/gpu_check.sh --only peak,pretrain,fsdp          # a rerun of some rows
#      bash bench/gpu_check.sh --set pretrain.max_steps=200       # one argument of one row's command
#
# Without a GPU: `python bench/gpu_check.py --dry-run` prints every command; `--cpu-smoke` runs the rows at
# tiny sizes on the CPU (tests/test_gpu_check.py does both).
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT_DIR=${OUT:-$REPO/bench/out}   # $OUT: the device tool's folder that comes back; bench/out/ is git-ignored
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
SITE=/tmp/gpu-check-site
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}

say() { echo "[gpu_check.sh] $*"; }

# ---- 1. wheels carried in .whl (TRL, datasets, math-verify, ...), into a folder of their own
if ls .whl/*.whl >/dev/null 2>&1; then
    say "installing $(ls .whl/*.whl | wc -l) wheels from .whl into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { say "error: installing the wheels in .whl failed"; exit 3; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    say "no .whl folder: using the packages already installed"
fi

# ---- 2. ladder itself, from this tree (its package-dir mapping needs an install: platform/ -> ladder, ...)
if ! "$PY" -c "import ladder.cli" >/dev/null 2>&1; then
    SRC=/tmp/gpu-check-src
    rm -rf "$SRC" "$SITE-ladder" && mkdir -p "$SRC"
    cp -r pyproject.toml README.md platform datasets rewards pretrain apps "$SRC"/
    say "installing ladder from this tree into $SITE-ladder"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE-ladder" "$SRC" \
        || { say "error: installing ladder from the tree failed (setuptools>=68 and wheel are needed)"; exit 3; }
    export PYTHONPATH="$SITE-ladder:$PYTHONPATH"
fi

# ---- 3. preflight: what there is to run on
say "preflight"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -2
"$PY" - <<'EOF'
import importlib.metadata as md
names = ["torch", "transformers", "accelerate", "trl", "peft", "datasets", "math-verify", "tokenizers",
         "tensorboard", "pyarrow", "fsspec", "huggingface-hub", "setuptools"]
def v(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "MISSING"
print("versions: " + ", ".join(f"{n} {v(n)}" for n in names))
try:
    import ladder.cli, trl, datasets, math_verify  # noqa: F401  (what every row imports)
    print("imports: ladder, trl, datasets, math_verify ok")
except Exception as e:
    print(f"imports FAILED: {type(e).__name__}: {e}")
EOF

# ---- 4. the check
rm -rf "$WORK"
"$PY" bench/gpu_check.py --work "$WORK" --out "$OUT_DIR" --budget "${GPU_CHECK_BUDGET:-480}" "$@" 2>&1 \
    | tee "$OUT_DIR/gpu_check.log"
code=${PIPESTATUS[0]}
tar -czf "$OUT_DIR/logs.tar.gz" -C "$WORK" logs 2>/dev/null || true
say "done (exit $code); table in $OUT_DIR/gpu_check.md"
exit "$code"
