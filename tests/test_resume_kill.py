"""kill -9 after the first saved checkpoint, start again with --resume: the same final weights as a run
never interrupted, for SFT, the reward model and GRPO (pretraining: tests/test_pretrain_train.py, PPO:
tests/test_ppo.py).

Each stage runs three times with the same arguments: straight through (in this process), as
`python -m ladder.<stage>` killed with SIGKILL as soon as its first checkpoint is complete, and again
with --resume on the killed run's output_dir. The subprocess gets this process's thread count, so the
two compute alike; on the project's CPU all three stages come out bitwise equal. The tolerance
(atol 1e-6) only absorbs float reassociation on other kernels: a lost data position, a reseeded
sampler or a fresh score head differs by 1e-2 and more.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ladder.manifest import read_manifest


def _kill_after_first_checkpoint(stage: str, args: list[str], out, timeout: float = 240) -> list[str]:
    """Run `python -m ladder.<stage> *args` and SIGKILL it once a Trainer checkpoint is complete
    (trainer_state.json is written last). Returns the checkpoints it left."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", f"ladder.{stage}", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not _complete_checkpoint(out) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise AssertionError(f"ladder.{stage} ended before it could be killed (rc {proc.returncode}): "
                             f"{proc.stderr.read()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (out / "ladder.json").exists(), "the kill must land mid-run"
    left = sorted(p.name for p in out.glob("checkpoint-*"))
    assert left, "a checkpoint was complete before the kill"
    return left


def _complete_checkpoint(out) -> bool:
    for state in out.glob("checkpoint-*/trainer_state.json"):
        try:
            json.loads(state.read_text())
            return True
        except ValueError:  # being written
            pass
    return False


def _count_steps(monkeypatch) -> list:
    """Training steps the (in-process) resumed run takes: fewer than all, or it did not resume."""
    from transformers import Trainer

    steps, original = [], Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step", lambda self, *a, **kw: steps.append(1) or original(self, *a, **kw))
    return steps


def _same_weights(straight, resumed, auto_class) -> None:
    a = auto_class.from_pretrained(straight).state_dict()
    b = auto_class.from_pretrained(resumed).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def _trained(start, final, auto_class) -> None:
    """The comparison means something only if training moved the weights."""
    a = auto_class.from_pretrained(start).state_dict()
    b = auto_class.from_pretrained(final).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if k in b)


def test_sft_killed_and_resumed_matches_the_uninterrupted_run(tiny_run, tmp_path, monkeypatch):
    """48 chats in batches of 8: 6 steps an epoch, 20 steps over 4 epochs, checkpoints every 4 steps
    (mid-epoch): the resumed run must find its place in the epoch and in the shuffled order."""
    from transformers import AutoModelForCausalLM

    from ladder import sft

    def args(out):
        return ["--model", str(tiny_run / "base"), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                "--max_train_samples", "48", "--per_device_train_batch_size", "8", "--max_steps", "20",
                "--save_steps", "4", "--eval_samples", "0", "--test_split", "null", "--report_to", "none",
                "--logging_steps", "4", "--learning_rate", "2e-3"]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert sft.main(args(straight)) == 0
    _kill_after_first_checkpoint("sft", args(killed), killed)
    steps = _count_steps(monkeypatch)
    assert sft.main([*args(killed), "--resume", "true"]) == 0
    assert read_manifest(killed)["metrics"]["steps"] == 20 and 0 < len(steps) < 20
    _trained(tiny_run / "base", straight, AutoModelForCausalLM)
    _same_weights(straight, killed, AutoModelForCausalLM)


def test_rm_killed_and_resumed_matches_the_uninterrupted_run(tiny_sft, tmp_path, monkeypatch):
    """The reward model's new score head is drawn at random: both runs must draw the same one (the
    stage seeds before loading), and the resumed run must load it back from the checkpoint."""
    from transformers import AutoModelForSequenceClassification

    from ladder import rm

    def args(out):
        return ["--model", str(tiny_sft), "--data", str(tiny_sft.parent / "data"), "--output_dir", str(out),
                "--max_train_samples", "48", "--per_device_train_batch_size", "8", "--max_steps", "16",
                "--save_steps", "4", "--test_split", "null", "--report_to", "none", "--logging_steps", "4",
                "--learning_rate", "2e-3"]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert rm.main(args(straight)) == 0
    _kill_after_first_checkpoint("rm", args(killed), killed)
    steps = _count_steps(monkeypatch)
    assert rm.main([*args(killed), "--resume", "true"]) == 0
    assert read_manifest(killed)["metrics"]["steps"] == 16 and 0 < len(steps) < 16
    _same_weights(straight, killed, AutoModelForSequenceClassification)


@pytest.mark.slow
def test_grpo_killed_and_resumed_matches_the_uninterrupted_run(tiny_run, tiny_sft, tmp_path, monkeypatch):
    """Sampled rollouts: the resumed run must sample what the uninterrupted one sampled after the
    checkpoint (the Trainer's RNG state and TRL's prompt sampler restored)."""
    from transformers import AutoModelForCausalLM

    from ladder import grpo

    def args(out):
        return ["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                "--max_train_samples", "64", "--per_device_train_batch_size", "8", "--num_generations", "4",
                "--max_completion_length", "16", "--max_steps", "6", "--save_steps", "2", "--eval_samples", "0",
                "--report_to", "none", "--logging_steps", "1", "--learning_rate", "1e-3", "--seed", "0",
                "--rewards", '[{"name": "length_penalty", "weight": 1.0}, "format_reward"]']

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert grpo.main(args(straight)) == 0
    _kill_after_first_checkpoint("grpo", args(killed), killed)
    steps = _count_steps(monkeypatch)
    assert grpo.main([*args(killed), "--resume", "true"]) == 0
    assert read_manifest(killed)["metrics"]["steps"] == 6 and 0 < len(steps) < 6
    _trained(tiny_sft, straight, AutoModelForCausalLM)
    _same_weights(straight, killed, AutoModelForCausalLM)


def test_resume_skips_a_checkpoint_killed_while_it_was_saved(tmp_path):
    """The Trainer writes checkpoint-N in place, trainer_state.json last: a half-written one is passed
    over for the last complete one (resuming from it would fail, or start from a half-saved state)."""
    from ladder.checkpoint import last_checkpoint

    assert last_checkpoint(tmp_path / "nothing") is None
    for step, state in ((4, json.dumps({"global_step": 4})), (8, '{"global_st'), (12, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text(json.dumps({"global_step": 12}))
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-12")
