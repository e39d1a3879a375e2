"""kill -9 after the first saved checkpoint, start again with --resume: the same final weights as a run
never interrupted, for SFT, the reward model, DPO, GRPO and RLOO (pretraining: tests/test_pretrain_train.py,
PPO: tests/test_ppo.py).

Each stage runs three times with the same arguments: straight through (in this process), as
`python -m ladder.<stage>` killed with SIGKILL as soon as its first checkpoint is complete, and again
with --resume on the killed run's output_dir. The subprocess gets this process's thread count, so the
two compute alike; on the project's CPU SFT, the reward model and GRPO come out bitwise equal. The tolerance
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


def _rl_args(data):
    return ["--data", str(data), "--max_train_samples", "64", "--per_device_train_batch_size", "8",
            "--num_generations", "4", "--max_completion_length", "16", "--max_steps", "4", "--save_steps", "2",
            "--eval_samples", "0", "--report_to", "none", "--logging_steps", "1", "--learning_rate", "1e-3",
            "--seed", "0", "--rewards", '[{"name": "length_penalty", "weight": 1.0}, "format_reward"]']


def _pair_args(data, steps: int, lr: str):
    return ["--data", str(data), "--max_train_samples", "48", "--per_device_train_batch_size", "8", "--max_steps",
            str(steps), "--save_steps", "4", "--test_split", "null", "--report_to", "none", "--logging_steps", "4",
            "--learning_rate", lr]


# stage -> (the model it starts from: "base" or "sft", its arguments, steps, what a resumed run must get right)
CASES = {
    # 48 chats in batches of 8: 6 steps an epoch, 20 over 4 epochs, checkpoints every 4 steps (mid-epoch)
    "sft": ("base", lambda data: ["--data", str(data), "--max_train_samples", "48", "--per_device_train_batch_size",
                                  "8", "--max_steps", "20", "--save_steps", "4", "--eval_samples", "0", "--test_split",
                                  "null", "--report_to", "none", "--logging_steps", "4", "--learning_rate", "2e-3"],
            20, "its place in the epoch and in the shuffled order"),
    "rm": ("sft", lambda data: _pair_args(data, 16, "2e-3"), 16,
           "the same random score head (seeded before loading), loaded back from the checkpoint"),
    "dpo": ("sft", lambda data: _pair_args(data, 8, "1e-3"), 8,
            "training from the checkpoint against the same frozen reference, in the same order of pairs"),
    "grpo": ("sft", _rl_args, 4, "the samples the uninterrupted run drew (the Trainer's RNG, TRL's prompt sampler)"),
    "rloo": ("sft", _rl_args, 4, "the samples the uninterrupted run drew, as GRPO's trainer"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", CASES)
def test_killed_and_resumed_matches_the_uninterrupted_run(stage, tiny_run, tiny_sft, tmp_path, monkeypatch):
    import importlib

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    start, stage_args, total, _ = CASES[stage]
    module = importlib.import_module(f"ladder.{stage}")
    model = tiny_run / "base" if start == "base" else tiny_sft
    auto = AutoModelForSequenceClassification if stage == "rm" else AutoModelForCausalLM

    def args(out):
        return ["--model", str(model), "--output_dir", str(out), *stage_args(tiny_run / "data")]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert module.main(args(straight)) == 0
    _kill_after_first_checkpoint(stage, args(killed), killed)
    steps = _count_steps(monkeypatch)
    assert module.main([*args(killed), "--resume", "true"]) == 0
    assert read_manifest(killed)["metrics"]["steps"] == total and 0 < len(steps) < total  # it resumed
    if stage != "rm":  # a reward model's score head is new: trained or not, it differs from the start
        _trained(model, straight, auto)
    _same_weights(straight, killed, auto)


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
