"""bench/gpu_check.py, the GPU check, without a GPU: its plan parses, lists every row, and names modules,
recipes and config keys that exist here; its CPU smoke mode runs cheap rows end to end, and a row that
fails says why in one line while the others still run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.py"

# the module each step's `--key value` pairs configure -> its config dataclass
CONFIGS = {
    "ladder.data.build": "DataConfig",
    "ladder.pretrain.tokenizer": "TokenizerConfig",
    "ladder.pretrain.train": "PretrainConfig",
    "ladder.sft": "SFTStageConfig",
    "ladder.grpo": "GRPOStageConfig",
    "ladder.ppo": "PPOStageConfig",
}


def load_gpu_check():
    if "gpu_check" in sys.modules:
        return sys.modules["gpu_check"]
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def stage_argv(step) -> list[str]:
    """The arguments after the last `-m module` (what the stage's load_config reads)."""
    i = len(step.argv) - 1 - step.argv[::-1].index("-m")
    return step.argv[i + 2:]


def test_dry_run_prints_every_row_and_imports_no_torch(tmp_path):
    code = (f"import runpy, sys; sys.argv = [{str(SCRIPT)!r}, '--dry-run', '--work', {str(tmp_path / 'w')!r}]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'trl', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout  # planning needs no torch (and so no GPU)
    for row in ("peak", "pretrain", "sft", "grpo", "ppo", "fsdp"):
        assert f"[row] {row}:" in out.stdout
    assert "accelerate_configs/fsdp.yaml" in out.stdout and "--num_processes 1" in out.stdout
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_plan_rows_and_modes(tmp_path):
    gc = load_gpu_check()
    gpu = gc.build_plan("gpu", tmp_path)
    rows = [s.name for s in gpu if s.kind == "row"]
    assert rows == list(gc.ROWS)
    assert all(s.skip is None for s in gpu)  # on a GPU every row runs
    assert "gpt2-124m" in " ".join(next(s for s in gpu if s.name == "pretrain").argv)
    by_name = {s.name: s for s in gpu}  # every training row in bf16
    assert all(gc.arg_value(by_name[n].argv, "mixed_precision") == "bf16" for n in ("pretrain", "fsdp"))
    assert all(gc.arg_value(by_name[n].argv, "bf16") == "true" for n in ("sft", "grpo", "ppo"))
    cpu = gc.build_plan("cpu", tmp_path)
    assert [s.name for s in cpu] == [s.name for s in gpu]
    assert next(s for s in cpu if s.name == "fsdp").skip  # FSDP does not run on a CPU: said, not failed
    assert "tiny" in next(s for s in cpu if s.name == "pretrain").argv
    # --only brings the prep steps a row needs; --set changes one argument of one command
    only = gc.build_plan("gpu", tmp_path, only=["sft"], overrides=["sft.max_steps=3"])
    assert [s.name for s in only] == ["data", "tokenizer", "base", "sft"]
    assert gc.arg_value(only[-1].argv, "max_steps") == "3"
    with pytest.raises(ValueError, match="unknown row"):
        gc.build_plan("gpu", tmp_path, only=["nope"])
    with pytest.raises(ValueError, match="STEP.KEY=VALUE"):
        gc.build_plan("gpu", tmp_path, overrides=["sft.max_steps"])


def test_plan_names_files_and_modules_that_exist(tmp_path):
    gc = load_gpu_check()
    for mode in ("gpu", "cpu"):
        for step in gc.build_plan(mode, tmp_path):
            argv = step.argv
            for flag in ("--config", "--config_file"):
                if flag in argv:
                    assert (REPO / argv[argv.index(flag) + 1]).is_file(), (step.name, flag)
            for arg in argv[1:]:
                if arg.startswith(("recipes/", "accelerate_configs/", "bench/")) or arg.startswith(str(REPO)):
                    assert (REPO / arg).exists(), (step.name, arg)
            for i, arg in enumerate(argv):
                if arg == "-m":
                    assert importlib.util.find_spec(argv[i + 1]) is not None, (step.name, argv[i + 1])
            if step.recipe:
                assert (REPO / step.recipe).is_file()
                assert step.stage in CONFIGS


def test_plan_arguments_are_config_keys_the_stages_accept(tmp_path):
    """Every step's --config + --key value pairs build the stage's config, as the stage itself would."""
    from ladder.config import load_config

    gc = load_gpu_check()
    for mode in ("gpu", "cpu"):
        for step in gc.build_plan(mode, tmp_path):
            if not step.stage:
                continue
            module = importlib.import_module(step.stage)
            cls = getattr(module, CONFIGS[step.stage])
            cfg = load_config(cls, stage_argv(step))
            assert str(cfg.output_dir).startswith(str(tmp_path)), step.name  # writes only under the work dir


def test_helpers():
    gc = load_gpu_check()
    log = "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\nmore\n"
    assert gc.one_line_error(log) == "RuntimeError: CUDA out of memory"
    assert gc.one_line_error("noise\nerror: model 'x': no such checkpoint folder\n") == \
        "error: model 'x': no such checkpoint folder"
    assert gc.one_line_error("") == "no output"
    # wall time, step, cumulative tokens: the first (warm-up) step is left out
    points = [(100.0, 1, 1000.0), (110.0, 2, 2000.0), (111.0, 3, 3000.0), (112.0, 4, 4000.0)]
    step_s, rate = gc.steady(points)
    assert step_s == pytest.approx(1.0) and rate == pytest.approx(1000.0)
    assert gc.steady(points[:1]) == (None, None)
    assert gc.set_arg(["--a", "1", "--b", "2"], "b", "3") == ["--a", "1", "--b", "3"]
    assert gc.set_arg(["--a", "1"], "c", "x") == ["--a", "1", "--c", "x"]


def test_mfu_helpers():
    load_gpu_check()  # puts bench/ on the path
    import mfu

    assert mfu.cpu_bf16_native({"avx2", "amx_bf16"}) and mfu.cpu_bf16_native({"avx512_bf16"})
    assert not mfu.cpu_bf16_native({"avx2", "fma"})
    assert mfu.precision_note("cpu", "bf16", {"avx2"}).startswith("emulated")
    assert mfu.precision_note("cpu", "fp32", {"avx2"}) == "native"
    assert mfu.train_flops_per_token(100, 2, 8, 16) == 6 * 100 + 12 * 2 * 8 * 16
    assert mfu.fmt_flops(7.9e14) == "790 TFLOP/s" and mfu.fmt_flops(4.2e11) == "420 GFLOP/s"


@pytest.mark.slow  # ~60-90 s on the 2-core CPU: three stage processes, each importing transformers
def test_cpu_smoke_runs_cheap_rows_and_a_failing_row_does_not_stop_the_rest(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # sft is given a model that does not exist: it must fail in one line, the other rows must still be measured
    run = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--work", str(tmp_path / "w"), "--out", str(out),
                          "--only", "peak,pretrain,sft", "--set", "sft.model=/nonexistent/model"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]  # a row failed: not a clean exit
    results = {r["name"]: r for r in json.loads((out / "gpu_check.json").read_text())}
    assert [n for n in results] == ["data", "tokenizer", "base", "peak", "pretrain", "sft"]
    assert all(results[n]["status"] == "ok" for n in ("data", "tokenizer", "base", "peak", "pretrain")), results
    assert results["peak"]["model_flops"] > 0 and "bf16" in results["peak"]["note"]
    pre = results["pretrain"]
    assert pre["tokens_per_s"] > 0 and pre["step_seconds"] > 0 and 0 < pre["mfu"], pre
    assert pre["model_flops"] == pytest.approx(pre["mfu"] * json.loads(
        (tmp_path / "w" / "peak.json").read_text())["bf16"]["flops"], rel=1e-6)
    sft = results["sft"]
    assert sft["status"] == "failed" and "/nonexistent/model" in sft["error"] and "\n" not in sft["error"], sft
    table = (out / "gpu_check.md").read_text()
    assert "| pretrain |" in table and "| sft |" in table and "failed: " in table and "MFU" in table
