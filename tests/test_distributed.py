"""Every stage on 2 CPU processes over gloo: DDP (cpu_ddp.yaml) and DeepSpeed ZeRO-2 / ZeRO-3.

One `accelerate launch` per engine runs every stage in turn in the same 2 processes, through
tests/scripts/stage_check.py (each stage's own `main`, with the model it trains remembered), as
`accelerate launch -m ladder.pipeline` runs a ladder (so a stage that left the launch unable to run the
next, as destroying the process group did, fails here too). For every stage it checks that:
- the run exits 0, and the stage itself says so from both ranks, in one world of 2, on the engine asked
  for ("sft rank 1/2 (DEEPSPEED ZeRO-3): 2 steps"), and records world_size 2 in its manifest;
- both ranks really took part: each rank's Accelerator saw a world of 2 over gloo; the ranks trained on
  different batches, yet hold identical weights at the end (so their gradients were combined: two
  unconnected ranks would have drifted apart);
- the checkpoint saved under 2 processes loads in this one process with plain transformers and gives the
  logits the in-memory (still DDP / DeepSpeed wrapped, under ZeRO-3 still sharded) model gave.

PPO trains its policy and critic as one module (one DeepSpeed engine); its checkpoint is the policy.
Tiny settings (2-3 steps, batches of 4) keep each stage at a few seconds once the launch has started
(starting one costs ~10 s of imports per process on 2 cores: once per engine, not once per stage).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ladder.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"ddp": ["cpu_ddp.yaml"], "zero2": ["zero2.yaml", "--num_processes", "2", "--mixed_precision", "no"],
           "zero3": ["zero3.yaml", "--num_processes", "2", "--mixed_precision", "no"]}
ENGINES = {"ddp": "MULTI_CPU", "zero2": "DEEPSPEED ZeRO-2", "zero3": "DEEPSPEED ZeRO-3"}
# ZeRO-2 only for GRPO and PPO (their own trainer subclass / loop step the optimizer in ways ZeRO-2 and -3
# handle differently); for pretraining, SFT, RM and DPO, ZeRO-3 (the one that shards weights, where ladder's
# gathers run) covers the DeepSpeed path, and pretraining's resume runs under ZeRO-3 below. RLOO is GRPO's
# ladder code (ladder.online_rl) around TRL's other trainer: DDP and ZeRO-3.
ALL = ("pretrain", "sft", "rm", "dpo", "grpo", "rloo", "ppo")
PLANS = {"ddp": ALL, "zero2": ("grpo", "ppo"), "zero3": ALL}
PORTS = {"ddp": 29610, "zero2": 29611, "zero3": 29612}  # distinct, so a lingering rank never blocks another launch


def stage_args(stage, engine, run: Path, sft: Path) -> list[str]:
    data, sft = str(run / "data"), str(sft)
    # generating held-out answers after training (rank 0 alone) is only at risk under ZeRO-3: only there
    samples = "1" if engine == "zero3" else "0"
    return {
        "pretrain": ["--data", data, "--tokenizer", str(run / "tokenizer"), "--model", "tiny", "--max_steps", "3",
                     "--batch_size", "4", "--eval_every", "3", "--eval_batches", "2", "--save_every", "100",
                     "--report_to", "none"],
        "sft": ["--model", str(run / "base"), "--data", data, "--max_steps", "2", "--per_device_train_batch_size", "4",
                "--max_train_samples", "32", "--eval_samples", samples, "--report_to", "none", "--save_strategy", "no"],
        "rm": ["--model", sft, "--data", data, "--max_steps", "2", "--per_device_train_batch_size", "4",
               "--max_train_samples", "32", "--report_to", "none", "--save_strategy", "no"],
        # DPO's reference is a second model: under ZeRO-3 a DeepSpeed engine of its own, and the held-out
        # pairs are scored before (every rank, weights gathered) and after (rank 0, a plain copy)
        "dpo": ["--model", sft, "--data", data, "--max_steps", "2", "--per_device_train_batch_size", "4",
                "--max_train_samples", "32", "--eval_pairs", "8", "--eval_samples", samples, "--report_to", "none",
                "--save_strategy", "no"],
        "grpo": ["--model", sft, "--data", data, "--max_steps", "2", "--per_device_train_batch_size", "2",
                 "--num_generations", "2", "--max_completion_length", "12", "--eval_samples", samples,
                 "--max_train_samples", "16", "--rewards", '["format_reward"]', "--report_to", "none",
                 "--save_strategy", "no", "--logging_steps", "1"],
        "rloo": ["--model", sft, "--data", data, "--max_steps", "2", "--per_device_train_batch_size", "2",
                 "--num_generations", "2", "--max_completion_length", "12", "--eval_samples", samples,
                 "--max_train_samples", "16", "--rewards", '["format_reward"]', "--report_to", "none",
                 "--save_strategy", "no", "--logging_steps", "1"],
        "ppo": ["--model", sft, "--data", data, "--reward_model", "null", "--critic_init", "policy",
                "--rewards", '["format_reward"]', "--max_steps", "2", "--eval_samples", "0",
                "--per_device_train_batch_size", "4", "--num_mini_batches", "1", "--response_length", "12",
                "--max_train_samples", "32", "--report_to", "none", "--logging_steps", "1", "--save_steps", "0",
                # under DDP a tiny target_kl stops every update early: the ranks must decide together, or DDP hangs
                *(["--target_kl", "1e-9"] if engine == "ddp" else [])],
    }[stage]


@pytest.mark.slow
@pytest.mark.parametrize("engine", PLANS)
def test_every_stage_on_two_processes(engine, tiny_run, tiny_sft, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CPU test: with CUDA these configs run on the GPUs (NCCL), not gloo")
    if engine != "ddp":
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[dev]')")
    check = tmp_path / "check"
    plan = [[stage, ["--output_dir", str(tmp_path / stage), *stage_args(stage, engine, tiny_run, tiny_sft)]]
            for stage in PLANS[engine]]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}  # ladder must set it itself
    env.update(OMP_NUM_THREADS="1", LADDER_CHECK_OUT=str(check))
    cfg, *launch = CONFIGS[engine]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" / cfg),
           *launch, "--main_process_port", str(PORTS[engine]), str(ROOT / "tests" / "scripts" / "stage_check.py"),
           str(tmp_path / "plan.json")]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    failed = [p.parent.name for p in check.glob("*/error.txt")]
    if res.returncode:
        launch_failed(res, f"stages that failed: {failed}")
    for stage in PLANS[engine]:
        check_stage(stage, engine, tmp_path / stage, check / stage, res.stdout)


def check_stage(stage, engine, out, check, said) -> None:
    # the stage says it ran on both ranks, in one world, on the engine asked for
    for rank in (0, 1):
        assert f"{stage} rank {rank}/2 ({ENGINES[engine]}): " in said, (stage, said[-2000:])
    manifest = read_manifest(out)
    assert manifest["metrics"]["world_size"] == 2 and manifest["metrics"]["steps"] >= 2, stage
    if (stage, engine) == ("ppo", "ddp"):
        assert [x["stopped_early"] for x in manifest["history"]] == [1.0, 1.0]

    # both ranks took part: one gloo world of 2, different data, the same weights at the end
    ranks = [json.loads((check / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1], stage
    for r in ranks:
        assert r["world"] == 2 and r["engine"] == ENGINES[engine] and r["backend"] == "gloo", (stage, r)
    assert ranks[0]["batch"] and ranks[0]["batch"] != ranks[1]["batch"], f"{stage}: both ranks saw the same batch"
    assert ranks[0]["weights"] == ranks[1]["weights"], f"{stage}: the ranks ended with different weights"
    assert ranks[0]["zero3"] == (engine == "zero3"), stage

    # the checkpoint, loaded alone, gives the logits of the model the 2 processes held in memory
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if stage == "rm" else AutoModelForCausalLM
    memory = torch.load(check / "logits.pt")
    model = auto.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(input_ids=memory["input_ids"]).logits
    assert logits.shape == memory["logits"].shape, stage
    torch.testing.assert_close(logits, memory["logits"], atol=1e-5, rtol=0, msg=lambda m: f"{stage}: {m}")


def launch_failed(res, what: str):
    """Fail with the launch's whole output tail, untruncated: a rank's own traceback sits above torchrun's
    summary ("Signal 6 (SIGABRT) received by PID ..."), which is all an assertion's shortened repr showed."""
    pytest.fail(f"launch exited {res.returncode} ({what})\n--- stdout (tail)\n{res.stdout[-3000:]}\n"
                f"--- stderr (tail)\n{res.stderr[-8000:]}", pytrace=False)


RESUMES = [("pretrain", "zero3", 29640), ("ppo", "zero2", 29641)]  # past PORTS


@pytest.mark.slow
@pytest.mark.parametrize("stage,engine,port", RESUMES, ids=[f"{s}-{e}" for s, e, _ in RESUMES])
def test_resume_on_two_processes(stage, engine, port, tiny_run, tiny_sft, tmp_path):
    """ladder's own loops save resumable states under DeepSpeed (every rank its shards) and `--resume`
    continues a 2-process run from the newest one: the state saved at step 2 of a 3-step run takes a
    second run on to step 4."""
    if torch.cuda.is_available():
        pytest.skip("CPU test")
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[dev]')")
    out = tmp_path / "out"
    args = stage_args(stage, engine, tiny_run, tiny_sft)
    save = {"pretrain": "--save_every", "ppo": "--save_steps"}[stage]
    args[args.index("--max_steps") + 1] = "3"
    args[args.index(save) + 1] = "2"
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update(OMP_NUM_THREADS="1")
    cfg, *launch = CONFIGS[engine]
    module = {"pretrain": "ladder.pretrain", "ppo": "ladder.ppo"}[stage]

    def launch_stage(*extra):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "accelerate_configs" / cfg), *launch, "--main_process_port", str(port), "-m", module,
               "--output_dir", str(out), *args, *extra]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
        if res.returncode:
            launch_failed(res, f"{stage} {' '.join(extra)}")
        return res.stdout + res.stderr

    launch_stage()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000002"]
    said = launch_stage("--resume", "true", "--max_steps", "4")
    assert "at step 2" in said
    for rank in (0, 1):
        assert f"{stage} rank {rank}/2 ({ENGINES[engine]}): " in said
    manifest = read_manifest(out)
    assert manifest["metrics"]["steps"] == 4 and manifest["metrics"]["world_size"] == 2
    if stage == "ppo":
        assert [h["step"] for h in manifest["history"]] == [1, 2, 3, 4]


EXIT_PROBE = """
import atexit, socket, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import torch.distributed as dist
from ladder.runtime import exit_process

class Finalised:  # says so when the interpreter's finalisation frees it
    def __del__(self, write=sys.stdout.write, flush=sys.stdout.flush):
        write("finalised\\n"); flush()

keep = Finalised()
if sys.argv[1:] == ["group"]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
atexit.register(print, "atexit ran")
threading.Thread(target=lambda: (time.sleep(0.5), print("thread joined"))).start()
pool = ThreadPoolExecutor(1)  # kept and never shut down: its idle worker must not hold the exit
pool.submit(print, "pool ran")
print("last words", end="")  # no newline, no flush: exit_process must flush it
exit_process(3)
"""


@pytest.mark.parametrize("group", [True, False])
def test_exit_process_skips_finalisation_only_for_a_distributed_rank(group):
    """ladder.runtime.exit_process: a gloo worker thread releasing its last work item during the interpreter's
    finalisation aborted finished ranks (SIGABRT, launch exit 1). A rank leaves with os._exit after what Python
    does before finalising (threads joined, atexit handlers, streams flushed); a plain process exits as usual."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a pipe is by default
    res = subprocess.run([sys.executable, "-c", EXIT_PROBE] + (["group"] if group else []),
                         capture_output=True, text=True, timeout=60, env={**env, "WORLD_SIZE": "1"})
    assert res.returncode == 3, res.stderr[-2000:]
    for said in ("pool ran", "thread joined", "atexit ran", "last words"):
        assert said in res.stdout, (said, res.stdout)
    assert ("finalised" in res.stdout) is not group
