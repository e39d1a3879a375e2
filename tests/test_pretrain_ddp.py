"""Two CPU processes over gloo: the ranks must really exist and average their gradients.

Some flag combinations (`accelerate launch --cpu --num_processes 2`, or a multi-process config
without ACCELERATE_USE_CPU) start processes that each train alone; these tests catch that.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "accelerate_configs" / "cpu_ddp.yaml"


def _launch(args, tmp_path, port):
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}  # ladder must set it itself
    env.update(OMP_NUM_THREADS="1", LADDER_DDP_OUT=str(tmp_path / "ranks.jsonl"))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
           "--main_process_port", str(port), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_ranks_exist_and_gradients_are_averaged(tmp_path):
    out = _launch([str(ROOT / "tests" / "scripts" / "ddp_check.py")], tmp_path, 29541)
    assert out.returncode == 0, out.stderr[-6000:]  # a rank's own message sits above torchrun's ~2,000-char summary
    ranks = sorted((json.loads(line) for line in (tmp_path / "ranks.jsonl").open()), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert ranks[0]["local"] != ranks[1]["local"]  # different data per rank...
    for r in ranks:  # ...yet every rank holds the mean gradient after backward
        assert r["grad"] == pytest.approx(r["mean_local"]) and r["backend"] == "gloo"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fsdp"])  # DeepSpeed ZeRO really runs on CPU: tests/test_distributed.py
def test_engines_that_cannot_run_on_cpu_say_so_instead_of_pretending(engine, tiny_run, tmp_path):
    """On CPU accelerate quietly runs FSDP as plain DDP: ladder refuses."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU these engines really run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / f"{engine}.yaml"), "--num_processes", "2", "--mixed_precision", "no",
           "--main_process_port", "29543", "-m", "ladder.pretrain", "--data", str(tiny_run / "data"),
           "--tokenizer", str(tiny_run / "tokenizer"), "--output_dir", str(tmp_path / "x"), "--model", "tiny",
           "--max_steps", "2", "--report_to", "none"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "was requested but accelerate set up MULTI_CPU" in out.stderr
    assert not (tmp_path / "x" / "ladder.json").exists()


@pytest.mark.gpu
def test_fsdp_pretraining_on_gpus(tiny_run, tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("FSDP needs 2+ CUDA GPUs: accelerate cannot run it on CPU (it falls back to DDP)")
    out = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(ROOT / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "2", "-m",
                          "ladder.pretrain", "--data", str(tiny_run / "data"), "--tokenizer",
                          str(tiny_run / "tokenizer"), "--output_dir", str(tmp_path / "base"), "--model", "tiny",
                          "--max_steps", "4", "--report_to", "none"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(FSDP)" in out.stdout + out.stderr
