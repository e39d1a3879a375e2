import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder import ppo
from ladder.errors import LadderError
from ladder.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--per_device_train_batch_size", "16", "--num_mini_batches", "2", "--response_length", "32",
         "--report_to", "none", "--logging_steps", "1", "--save_steps", "0", "--max_train_samples", "200",
         "--seed", "0"]


def test_ppo_raises_a_verifiable_reward_with_bounded_kl(tiny_run, tiny_sft, tmp_path):
    """Reward: shorter answers (length_penalty) + format; no reward model. The policy must learn it
    while its KL to the reference stays small."""
    out = tmp_path / "ppo"
    assert ppo.main(["--model", str(tiny_sft), "--reward_model", "null", "--critic_init", "policy",
                     "--data", str(tiny_run / "data"), "--output_dir", str(out), "--max_steps", "15",
                     "--learning_rate", "3e-4", "--eval_samples", "0",
                     "--rewards", '[{"name": "length_penalty", "weight": 1.0}, "format_reward"]', *SHORT]) == 0
    h = read_manifest(out)["history"]
    first = sum(x["reward"] for x in h[:3]) / 3
    last = sum(x["reward"] for x in h[-3:]) / 3
    print(f"reward {first:.4f} -> {last:.4f}, max KL {max(x['kl'] for x in h):.3f}")
    assert last > first
    assert max(abs(x["kl"]) for x in h) < 10.0  # nats per sequence, against ~64 tokens


def test_ppo_with_the_reward_model_runs_and_records_it(tiny_run, tiny_sft, tiny_rm, tmp_path):
    out = tmp_path / "ppo_rm"
    assert ppo.main(["--model", str(tiny_sft), "--reward_model", str(tiny_rm), "--data", str(tiny_run / "data"),
                     "--output_dir", str(out), "--max_steps", "3", "--eval_samples", "16", *SHORT]) == 0
    m = read_manifest(out)
    assert m["stage"] == "ppo" and m["metrics"]["reward_model"] == str(tiny_rm)
    assert "before/rm_score" in m["metrics"] and "after/rm_score" in m["metrics"]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)


def test_resume_continues_from_the_saved_step(tiny_run, tiny_sft, tmp_path):
    out = tmp_path / "ppo_resume"
    args = ["--model", str(tiny_sft), "--reward_model", "null", "--critic_init", "policy", "--rewards",
            '["format_reward"]', "--data", str(tiny_run / "data"), "--output_dir", str(out), "--eval_samples", "0",
            *SHORT]
    args[args.index("--save_steps") + 1] = "2"
    assert ppo.main([*args, "--max_steps", "3"]) == 0  # saves a state at step 2
    assert ppo.main([*args, "--max_steps", "4", "--resume", "true"]) == 0
    h = read_manifest(out)["history"]
    assert [x["step"] for x in h] == [3, 4]  # continued from step 2, did not start over


def test_bad_inputs_fail_before_training(tiny_run, tiny_sft, tiny_rm, tmp_path):
    base = ["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(tmp_path / "o")]
    cases = [
        (["--reward_model", "null"], "no reward source"),
        (["--reward_model", str(tmp_path / "nope")], "not a model directory"),
        (["--reward_model", str(tiny_rm), "--critic_init", str(tmp_path / "nope")], "no such checkpoint"),
        (["--reward_model", str(tiny_rm), "--load_in_4bit", "true"], "set use_lora: true"),
        (["--reward_model", str(tiny_rm), "--kl_estimator", "k9"], "k1 or k3"),
    ]
    for extra, msg in cases:
        with pytest.raises(LadderError) as e:
            ppo.main([*base, *extra])
        assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_two_process_ppo_on_cpu(tiny_run, tiny_sft, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "ppo2"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu_ddp.yaml"), "--main_process_port", "29551", "-m", "ladder.ppo",
           "--model", str(tiny_sft), "--reward_model", "null", "--critic_init", "policy", "--rewards",
           '["format_reward"]', "--data", str(tiny_run / "data"), "--output_dir", str(out), "--max_steps", "2",
           "--eval_samples", "0", *SHORT]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert read_manifest(out)["metrics"]["world_size"] == 2
