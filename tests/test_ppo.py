"""The PPO stage: it learns (reward model, verifiable rewards) with bounded KL, runs as 2 DDP
processes, resumes exactly, and refuses bad inputs with one line before training."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ladder import ppo
from ladder.errors import LadderError
from ladder.manifest import read_manifest
from ladder.samplers import HFSampler, ServerSampler

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--per_device_train_batch_size", "16", "--num_mini_batches", "2", "--response_length", "32",
         "--report_to", "none", "--logging_steps", "1", "--save_steps", "0", "--max_train_samples", "200",
         "--seed", "0"]
FORMAT_ONLY = ["--reward_model", "null", "--critic_init", "policy", "--rewards", '["format_reward"]']


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mean(xs):
    return sum(xs) / len(xs)


def test_ppo_raises_the_reward_model_score_on_heldout_prompts(tiny_run, tiny_sft, tiny_rm, tmp_path):
    """RLHF proper: the critic starts from the reward model; held-out prompts are sampled before and
    after. The preference pairs were labelled by a hidden rule (ladder.data.human) that PPO never sees;
    that rule's score is recorded as an evaluation-only judge."""
    out = tmp_path / "ppo_rm"
    assert ppo.main(["--model", str(tiny_sft), "--reward_model", str(tiny_rm), "--data", str(tiny_run / "data"),
                     "--output_dir", str(out), "--max_steps", "20", "--learning_rate", "3e-4",
                     "--eval_samples", "64", "--judge", "ladder.data.human:human_style", "--heldout_every", "10",
                     *SHORT, "--report_to", "tensorboard", "--logging_steps", "5"]) == 0
    m = read_manifest(out)
    metrics, h = m["metrics"], m["history"]
    print(f"held-out sampled RM score {metrics['before/rm_score_sampled']:.3f} -> "
          f"{metrics['after/rm_score_sampled']:.3f}; greedy {metrics['before/rm_score']:.3f} -> "
          f"{metrics['after/rm_score']:.3f}; hidden human (sampled) "
          f"{metrics['before/judge/human_style_sampled']:.3f} -> {metrics['after/judge/human_style_sampled']:.3f}; "
          f"KL max {max(x['kl'] for x in h):.2f}")
    assert m["stage"] == "ppo" and m["parent"] == str(tiny_sft) and metrics["reward_model"] == str(tiny_rm)
    assert metrics["after/rm_score_sampled"] > metrics["before/rm_score_sampled"] + 0.05
    # the judge is scored (and plotted per step) but not asserted on here: on this 0.1M model the reward
    # model's learnt taste and the hidden rule part within 20 steps (measured 0.11 -> 0.05 while the RM
    # score rose); the default ladder's 1.9M model is where PPO raises both (bench/RESULTS.md)
    assert -1 <= metrics["after/judge/human_style_sampled"] <= 1
    assert "heldout_judge/human_style" in h[9] and "heldout_rm_score" in h[9]  # the per-step curve (step 10)
    assert 0 <= metrics["before/accuracy_sampled"] <= 1 and 0 <= metrics["after/accuracy_sampled"] <= 1
    assert mean([x["reward"] for x in h[-5:]]) > mean([x["reward"] for x in h[:5]])
    assert h[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the reference is the starting policy
    # bounded by the KL penalty: under 0.5 nats per token of the 32-token responses (a policy that
    # runs away from the reference to exploit the reward model goes far past this)
    assert max(abs(x["kl"]) for x in h) < 16.0
    assert list((out / "logs" / "ppo").glob("events.out.tfevents.*"))  # TensorBoard curves and samples
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_ppo_raises_a_verifiable_reward_with_bounded_kl(tiny_run, tiny_sft, tmp_path):
    """No reward model: math_accuracy + format_reward, the critic from the policy. The reward rises
    (the format first) and the sampled accuracy on the training prompts does not fall beyond its noise;
    this 150-step model knows too little arithmetic for held-out accuracy to move (~2-4% of rollouts are
    right). Held-out accuracy of a real model under the same stage: bench/smollm2_rl.py --stage ppo.

    Three seeds pooled: each CPU kind's rounding makes a different run, and one seed's rollout accuracy
    (6 right of 192 -> 1 right of 192 on the AVX512-BF16 EPYC, seed 0) is mostly noise. Measured
    2026-12-07, reward first 6 steps -> last 6, seeds 0-2: AVX512 EPYC +0.13 / +0.23 / +0.18; held to AVX2
    kernels (see test_grpo) +0.19 / +0.09 / +0.29; pooled accuracy 2.7% -> 4.1% and 2.1% -> 2.8%."""
    import math

    rollouts = int(SHORT[SHORT.index("--per_device_train_batch_size") + 1])  # a step's batch
    gains, right, n = [], [0, 0], [0, 0]
    for seed in range(3):
        out = tmp_path / f"ppo_verifiable-{seed}"
        assert ppo.main(["--model", str(tiny_sft), "--reward_model", "null", "--critic_init", "policy",
                         "--rewards", '["math_accuracy", "format_reward"]', "--data", str(tiny_run / "data"),
                         "--output_dir", str(out), "--max_steps", "24", "--learning_rate", "3e-4",
                         "--eval_samples", "0", *SHORT, "--seed", str(seed)]) == 0
        h = read_manifest(out)["history"]
        gains.append(mean([x["reward"] for x in h[-6:]]) - mean([x["reward"] for x in h[:6]]))
        for half, steps in enumerate((h[:12], h[12:])):  # rollouts right in the first and second half
            right[half] += sum(x["math_accuracy"] for x in steps) * rollouts
            n[half] += len(steps) * rollouts
        assert max(abs(x["kl"]) for x in h) < 10.0
    acc_first, acc_last = right[0] / n[0], right[1] / n[1]
    se = math.sqrt(acc_first * (1 - acc_first) / n[0] + acc_last * (1 - acc_last) / n[1])
    print("reward gain per seed " + ", ".join(f"{g:+.3f}" for g in gains) +
          f"; rollout accuracy {acc_first:.3f} -> {acc_last:.3f} (SE of the difference {se:.3f})")
    assert mean(gains) > 0.1
    assert acc_last >= acc_first - 2 * se


def test_resume_reproduces_the_uninterrupted_run(tiny_run, tiny_sft, tmp_path):
    """A run that stopped after its step-2 state continues at step 3 exactly as if never stopped:
    weights, optimizer, LR schedule, KL coefficient, data position and RNG all come back."""
    args = ["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"), "--eval_samples", "0",
            "--max_steps", "4", "--adaptive_kl", "true", "--kl_horizon", "100", *SHORT]
    args[args.index("--save_steps") + 1] = "2"
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert ppo.main([*args, "--output_dir", str(whole)]) == 0
    shutil.copytree(whole / "checkpoints", cut / "checkpoints")  # what a run killed during step 3 leaves
    assert ppo.main([*args, "--output_dir", str(cut), "--resume", "true"]) == 0
    h_whole, h_cut = read_manifest(whole)["history"], read_manifest(cut)["history"]
    assert [x["step"] for x in h_cut] == [1, 2, 3, 4]
    assert h_whole[1]["kl_coef"] != h_whole[0]["kl_coef"]  # the adaptive coefficient moved (and was restored)
    for a, b in zip(h_whole, h_cut):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_critic_warmup_trains_only_the_critic(tiny_run, tiny_sft, tmp_path):
    """During critic_warmup_steps the policy keeps its weights (KL to the reference stays 0), even under
    weight decay, and its optimizer state stays empty (no moments, no step count: a zero gradient would
    still step them), while the critic, starting from a random value head, fits the returns."""
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "warm"
    args = ["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"), "--output_dir", str(out),
            "--max_steps", "3", "--critic_warmup_steps", "3", "--learning_rate", "1e-3", "--weight_decay", "0.1",
            "--eval_samples", "0", *SHORT]
    args[args.index("--save_steps") + 1] = "2"  # the state after step 2: the optimizer's as warm-up left it
    assert ppo.main(args) == 0
    h = read_manifest(out)["history"]
    assert all(x["kl"] == pytest.approx(0.0, abs=1e-5) for x in h)
    assert h[-1]["vf_loss"] < h[0]["vf_loss"]
    before, after = load_file(tiny_sft / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    opt = torch.load(out / "checkpoints" / "step-0000002" / "optimizer.bin", weights_only=False)
    policy, critic = (g["params"] for g in opt["param_groups"])
    assert not any(i in opt["state"] for i in policy)  # AdamW never stepped the policy
    assert all(opt["state"][i]["step"] == 8 for i in critic)  # 2 steps x 2 epochs x 2 minibatches


@pytest.fixture
def opinionated_sft(tiny_sft, tmp_path):
    """tiny_sft with a generation_config.json as hub chat models ship one: sampling settings of its own
    (Qwen2.5-Instruct has repetition_penalty 1.05, top_k 20, top_p 0.8) and two EOS ids (Llama 3 and Qwen
    list several): `</think>` ends an answer too, which this model writes in every answer."""
    import json

    out = tmp_path / "opinionated"
    shutil.copytree(tiny_sft, out)
    config = json.loads((out / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=1.3, top_k=3, top_p=0.5, min_p=0.2, repetition_penalty=1.5,
                  no_repeat_ngram_size=2, eos_token_id=[config["eos_token_id"], 401])
    (out / "generation_config.json").write_text(json.dumps(config))
    return out


def rollout_inputs(path, data, n=16):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.data.loaders import load_split

    model, tokenizer = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    prompts = [r["prompt"] for r in load_split(str(data), "rl", "train", limit=n)]
    return model, tokenizer, prompts, SimpleNamespace(temperature=0.7, response_length=24)


def test_hf_rollouts_sample_what_the_logprobs_assume(tiny_run, opinionated_sft):
    """At temperature 0.7, the log-prob the sampler drew each token with (its processed scores) is the
    trainer's log_softmax(logits / 0.7): none of the checkpoint's top-k, top-p, min-p or penalties apply."""
    import torch

    model, tokenizer, prompts, cfg = rollout_inputs(opinionated_sft, tiny_run / "data")
    assert model.generation_config.repetition_penalty == 1.5  # the checkpoint's settings are there to ignore
    drawn, generate = {}, model.generate

    def generate_with_scores(**kwargs):
        out = generate(**kwargs, output_scores=True, return_dict_in_generate=True)
        drawn["logprobs"] = torch.stack(out.scores, 1).log_softmax(-1)  # the distributions sampled from
        return out.sequences

    model.generate = generate_with_scores
    torch.manual_seed(0)
    ro = HFSampler(cfg.temperature, cfg.response_length)(model, tokenizer, prompts)
    sampler = drawn["logprobs"].gather(-1, ro.seq[:, ro.n_prompt:, None]).squeeze(-1)
    with torch.no_grad():
        trainer, _ = ppo.response_logprobs(model, ro.seq, ro.attention, ro.n_prompt, cfg.temperature)
    gap = ((sampler - trainer).abs() * ro.mask).max().item()
    print(f"max |sampler - trainer| log-prob at T=0.7: {gap:.2e}")
    assert gap < 1e-4


def test_any_eos_id_ends_a_response(tiny_run, opinionated_sft):
    """With two EOS ids (the tokenizer's and `</think>`), the response ends at whichever comes first: the
    mask stops there, the answer counts as ended (no missing-EOS penalty) and the text stops there."""
    import torch

    model, tokenizer, prompts, cfg = rollout_inputs(opinionated_sft, tiny_run / "data")
    torch.manual_seed(0)
    ro = HFSampler(cfg.temperature, cfg.response_length)(model, tokenizer, prompts)
    response = ro.seq[:, ro.n_prompt:]
    ends = (response == tokenizer.eos_token_id) | (response == 401)
    assert ends.any(1).float().mean() > 0.5  # most answers write </think> within 24 tokens
    for row, end, mask, has_eos, text in zip(response, ends, ro.mask, ro.has_eos, ro.texts):
        length = int(end.float().argmax()) + 1 if end.any() else len(row)
        assert mask.sum() == length and bool(has_eos) == bool(end.any())
        assert text == tokenizer.decode(row[:length], skip_special_tokens=True)
    from ladder import ppo_math

    scores = ppo_math.eos_penalty(torch.zeros(len(prompts)), ro.has_eos, 1.0)
    assert scores.tolist() == [0.0 if e.any() else -1.0 for e in ends]


@pytest.mark.parametrize("lora", [False, True])
def test_bf16_reference_is_the_policy_at_the_start(tiny_run, tiny_sft, tmp_path, lora):
    """bf16 mixed precision: the reference pass runs under the policy's autocast, so before any update
    the KL is 0, not bf16 rounding (measured 3.5e-3 per sequence with the reference in fp32)."""
    out = tmp_path / "bf16"
    assert ppo.main(["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"), "--output_dir",
                     str(out), "--max_steps", "2", "--eval_samples", "0", "--bf16", "true", "--learning_rate", "1e-3",
                     "--use_lora", str(lora).lower(), *SHORT]) == 0
    h = read_manifest(out)["history"]
    assert h[0]["kl"] == 0.0 and h[1]["kl"] != 0.0


def test_fp16_without_deepspeed_updates(tiny_run, tiny_sft, tmp_path, monkeypatch):
    """fp16 mixed precision with a GradScaler (accelerate makes one on GPUs only; given one here on the
    CPU, with fp16 autocast): both models' gradients are unscaled once, then clipped each on its own
    (unscaling per model raised "unscale_() has already been called" at the first update)."""
    import accelerate
    import torch

    made = []

    class GPUStyleAccelerator(accelerate.Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.mixed_precision == "fp16":
                self.native_amp, self.scaler = True, torch.amp.GradScaler("cpu")
                made.append(self)

    monkeypatch.setattr(accelerate, "Accelerator", GPUStyleAccelerator)
    out = tmp_path / "fp16"
    assert ppo.main(["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"), "--output_dir",
                     str(out), "--max_steps", "2", "--eval_samples", "0", "--fp16", "true", "--learning_rate", "1e-3",
                     *SHORT]) == 0
    assert made and made[0].scaler._scale is not None  # the scaler scaled the losses
    h = read_manifest(out)["history"]
    assert h[0]["kl"] == 0.0 and h[1]["kl"] != 0.0  # the reference under the same fp16 autocast; updates happened


def test_the_critic_gets_rows_for_added_chat_tokens(tiny_sft, tmp_path, monkeypatch):
    """A checkpoint without a chat template gets ladder's, with new tokens: the policy, the reference
    and the critic (which reads the same tokens) all grow to the new vocabulary."""
    import torch

    from ladder import models

    load = models.load_tokenizer

    def without_template(path):  # as for a base hub model: the template's tokens are new
        tokenizer, _ = load(path)
        tokenizer.add_tokens(["<|new_role|>", "<|new_end|>"])
        return tokenizer, True

    monkeypatch.setattr(models, "load_tokenizer", without_template)
    cfg = ppo.PPOStageConfig(model=str(tiny_sft), reward_model=None, critic_init="policy", rewards=["format_reward"],
                             output_dir=str(tmp_path / "o"), report_to="none")
    policy, reference, critic, tokenizer = ppo.load_actors(cfg)
    assert len(tokenizer) == 406
    for model in (policy, reference, critic.model):
        assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    seq = torch.tensor([[5, 6, 404, 405]])
    assert critic(seq, torch.ones_like(seq)).shape == (1, 4)  # IndexError with the critic's old 404 rows


def test_a_nan_reward_stops_training_naming_the_reward(tmp_path):
    from types import SimpleNamespace

    plugin = tmp_path / "flaky.py"
    plugin.write_text("def flaky(completions, **kw):\n"
                      "    return [float('nan') if 'x' in str(c) else 1.0 for c in completions]\n")
    rewarder = ppo.Rewarder(SimpleNamespace(reward_model=None, rewards=[f"{plugin}:flaky"]))
    assert rewarder(["p", "q"], ["fine", "fine"], [{"prompt": "p"}, {"prompt": "q"}])[0] == [1.0, 1.0]
    with pytest.raises(LadderError, match="reward 'flaky' returned nan during training, for the completion 'x'"):
        rewarder(["p", "q"], ["fine", "x"], [{"prompt": "p"}, {"prompt": "q"}])


def test_server_rollouts_seed_every_prompt(tiny_sft):
    """vllm_mode server: one request carries one seed for all its prompts (the same random draws for each:
    correlated samples, identical ones for equal prompts), so each prompt goes in a request of its own,
    with its own seed and every sampling setting explicit, and the answers end at any EOS id."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_sft)
    requests = []

    class Client:
        def generate(self, prompts, **kwargs):
            requests.append((prompts, kwargs))
            return {"completion_ids": [[7, tokenizer.eos_token_id]] * len(prompts),
                    "logprobs": [[[-0.5], [-0.25]]] * len(prompts)}

    server = object.__new__(ServerSampler)  # no server: the requests are what is checked
    server.accelerator = SimpleNamespace(is_main_process=False, wait_for_everyone=lambda: None)
    server.client, server.temperature, server.max_tokens = Client(), 0.7, 8
    ro = server(AutoModelForCausalLM.from_pretrained(tiny_sft), tokenizer, ["What is 2 + 2?"] * 4, [10, 11, 12, 13])
    assert sorted(kw["generation_kwargs"]["seed"] for _, kw in requests) == [10, 11, 12, 13]
    assert all(len(prompts) == 1 for prompts, _ in requests)
    assert all(kw["temperature"] == 0.7 and kw["top_k"] == 0 and kw["top_p"] == 1.0 and kw["repetition_penalty"] == 1.0
               and kw["min_p"] == 0.0 and kw["generation_kwargs"]["stop_token_ids"] == [tokenizer.eos_token_id]
               for _, kw in requests)
    assert ro.has_eos.all() and ro.mask.sum(1).tolist() == [2.0] * 4
    assert ro.sampler_logprobs[:, :2].tolist() == [[-0.5, -0.25]] * 4


@pytest.mark.slow
def test_killed_with_sigkill_then_resumed_reaches_the_same_weights(tiny_run, tiny_sft, tmp_path):
    """`python -m ladder.ppo --config` killed with SIGKILL after its first saved state, then run again with
    --resume: the same final weights (and history) as a run never interrupted."""
    import signal
    import time

    import torch
    import yaml
    from safetensors.torch import load_file

    recipe = tmp_path / "ppo.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": str(tiny_sft), "reward_model": None, "critic_init": "policy", "rewards": ["format_reward"],
        "data": str(tiny_run / "data"), "eval_samples": 0, "max_steps": 8, "save_steps": 2, "adaptive_kl": True,
        "kl_horizon": 100, "per_device_train_batch_size": 16, "num_mini_batches": 2, "response_length": 32,
        "max_train_samples": 200, "learning_rate": 3e-4, "report_to": "none", "logging_steps": 1, "seed": 0}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads in every run: the same float sums

    def command(out, *extra):
        return [sys.executable, "-m", "ladder.ppo", "--config", str(recipe), "--output_dir", str(out), *extra]

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    res = subprocess.run(command(whole), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "killed.log", "w") as log:
        run = subprocess.Popen(command(cut), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (cut / "checkpoints" / "step-0000002").exists() and run.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        assert run.wait(60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert not (cut / "ladder.json").exists()  # killed before it finished
    res = subprocess.run(command(cut, "--resume", "true"), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stdout + res.stderr
    a, b = load_file(whole / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7), k
    assert not all(torch.equal(a[k], v) for k, v in load_file(tiny_sft / "model.safetensors").items())  # it trained
    h_whole, h_cut = read_manifest(whole)["history"], read_manifest(cut)["history"]
    assert [x["step"] for x in h_cut] == list(range(1, 9))
    for x, y in zip(h_whole, h_cut):
        assert x == pytest.approx(y, rel=1e-4, abs=1e-6)


def test_lora_policy_with_the_adapter_off_as_reference(tiny_run, tiny_sft, tmp_path):
    out = tmp_path / "ppo_lora"
    assert ppo.main(["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"),
                     "--output_dir", str(out), "--max_steps", "2", "--eval_samples", "0", "--use_lora", "true",
                     "--learning_rate", "1e-3", *SHORT]) == 0
    h = read_manifest(out)["history"]
    assert h[0]["kl"] == pytest.approx(0.0, abs=1e-5) and h[1]["kl"] != 0.0  # LoRA starts as the identity
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)  # merged: a plain model, no adapter files needed
    assert not any("lora" in k for k in model.state_dict())


def test_gradient_checkpointing_recomputes_the_updates_and_changes_nothing_else(tiny_run, tiny_sft, tmp_path,
                                                                                 monkeypatch):
    """With gradient_checkpointing the update passes run each decoder layer again in the backward, with the
    layer (not its attention or dropout) in training mode; rollouts and no-grad passes do not. The run's
    numbers are those of the run without it."""
    import torch
    from transformers.models.llama import modeling_llama

    calls = []
    layer_forward = modeling_llama.LlamaDecoderLayer.forward

    def counting(self, *a, **k):
        calls.append((torch.is_grad_enabled(), self.training, self.self_attn.training))
        return layer_forward(self, *a, **k)

    monkeypatch.setattr(modeling_llama.LlamaDecoderLayer, "forward", counting)
    args = ["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"), "--max_steps", "2",
            "--eval_samples", "0", *SHORT]
    seen = {}
    for on in ("false", "true"):
        calls.clear()
        assert ppo.main([*args, "--output_dir", str(tmp_path / on), "--gradient_checkpointing", on]) == 0
        seen[on] = list(calls)
    plain, checkpointed = seen["false"], seen["true"]
    assert not any(training for _, training, _ in plain)
    assert sum(grad for grad, _, _ in checkpointed) > sum(grad for grad, _, _ in plain)  # the recomputes
    assert {training for grad, training, _ in checkpointed if grad} == {True}
    assert not any(training for grad, training, _ in checkpointed if not grad)  # sampling, old log-probs
    assert not any(attn for _, _, attn in checkpointed)  # dropout stays off
    for a, b in zip(read_manifest(tmp_path / "false")["history"], read_manifest(tmp_path / "true")["history"]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_vllm_rollouts_with_exact_weight_sync(tiny_run, tiny_sft, tmp_path):
    """rollout_backend: vllm samples from an engine the policy's weights are pushed into every step:
    the log-probs vLLM sampled with (at temperature 0.7) match the trainer's own, also after the policy
    has changed."""
    from ladder.runtime import vllm_available

    if not vllm_available():
        pytest.skip("vLLM is not installed")
    out = tmp_path / "ppo_vllm"
    assert ppo.main(["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"),
                     "--output_dir", str(out), "--max_steps", "3", "--eval_samples", "0", "--learning_rate", "3e-4",
                     "--rollout_backend", "vllm", "--temperature", "0.7", *SHORT]) == 0
    h = read_manifest(out)["history"]
    assert h[-1]["kl"] != 0.0  # the policy moved away from the weights the engine started with
    assert all(x["sampler_logprob_gap"] < 1e-3 for x in h), [x["sampler_logprob_gap"] for x in h]


@pytest.mark.slow
def test_vllm_server_rollouts_with_exact_weight_sync(tiny_run, tiny_sft, vllm_server, tmp_path):
    """vllm_mode: server: a `ladder vllm-serve` process samples; the policy's weights reach it before
    every step (on CPU through a file it reloads), so its log-probs (at temperature 0.7, one request per
    prompt) match the trainer's after updates."""
    out = tmp_path / "ppo_server"
    assert ppo.main(["--model", str(tiny_sft), *FORMAT_ONLY, "--data", str(tiny_run / "data"),
                     "--output_dir", str(out), "--max_steps", "3", "--eval_samples", "0", "--learning_rate", "3e-4",
                     "--rollout_backend", "vllm", "--vllm_mode", "server", "--vllm_server_port", str(vllm_server),
                     "--vllm_server_timeout", "400", "--temperature", "0.7", *SHORT]) == 0
    h = read_manifest(out)["history"]
    assert h[-1]["kl"] != 0.0  # the policy moved away from the weights the server started with
    assert all(x["sampler_logprob_gap"] < 1e-3 for x in h), [x["sampler_logprob_gap"] for x in h]


@pytest.fixture
def foreign_rm(tiny_run, tmp_path):
    """A (random) reward model with a tokenizer of its own, unlike the policy's."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ladder.pretrain import tokenizer as tok_stage
    from ladder.pretrain.model import model_config

    tok_dir, rm_dir = tmp_path / "foreign_tok", tmp_path / "foreign_rm"
    assert tok_stage.main(["--data", str(tiny_run / "data"), "--output_dir", str(tok_dir), "--vocab_size", "330",
                           "--max_texts", "300"]) == 0
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = model_config("tiny", tok)
    config.num_labels = 1
    AutoModelForSequenceClassification.from_config(config).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    return rm_dir


def test_reward_model_with_another_tokenizer(tiny_run, tiny_sft, foreign_rm, tmp_path):
    """The reward model re-tokenises the text, so it may use another tokenizer; the critic reads the
    policy's tokens, so it cannot start from that reward model."""
    assert not ppo.same_vocab(str(foreign_rm), str(tiny_sft))
    base = ["--model", str(tiny_sft), "--reward_model", str(foreign_rm), "--data", str(tiny_run / "data"),
            "--eval_samples", "0", "--max_steps", "2", *SHORT]
    with pytest.raises(LadderError, match="different tokenizer from the policy.*critic_init: policy"):
        ppo.main([*base, "--output_dir", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
    assert ppo.main([*base, "--critic_init", "policy", "--output_dir", str(tmp_path / "b")]) == 0
    assert all("rm_score" in x for x in read_manifest(tmp_path / "b")["history"])


def test_bad_inputs_fail_before_training(tiny_run, tiny_sft, tiny_rm, tmp_path):
    base = ["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(tmp_path / "o")]
    cases = [
        (["--reward_model", "null"], "no reward source"),
        (["--reward_model", "null", "--rewards", '["format_reward"]'], "critic_init: reward_model needs a reward"),
        (["--reward_model", str(tmp_path / "nope")], "not a model directory"),
        (["--reward_model", str(tiny_rm), "--critic_init", str(tmp_path / "nope")], "no such checkpoint"),
        (["--reward_model", str(tiny_rm), "--load_in_4bit", "true"], "set use_lora: true"),
        (["--reward_model", str(tiny_rm), "--use_lora", "true", "--load_in_4bit", "true"], "QLoRA"),
        (["--reward_model", str(tiny_rm), "--kl_estimator", "k9"], "k1 or k3"),
        (["--reward_model", str(tiny_rm), "--rollout_backend", "sglang"], "hf or vllm"),
        (["--reward_model", str(tiny_rm), "--rollout_backend", "vllm", "--vllm_mode", "server", "--vllm_server_port",
          str(free_port()), "--vllm_server_timeout", "1"], "no vLLM server answers"),
        (["--reward_model", str(tiny_rm), "--per_device_train_batch_size", "10", "--num_mini_batches", "4"],
         "divisible"),
        (["--reward_model", str(tiny_rm), "--rewards", '["no_such_reward"]'], "no_such_reward"),
        (["--model", str(tmp_path / "missing"), "--reward_model", str(tiny_rm)], "not a model directory"),
    ]
    for extra, msg in cases:
        with pytest.raises(LadderError) as e:
            ppo.main([*base, *extra])
        assert msg in str(e.value) and "\n" not in str(e.value), (extra, str(e.value))
    assert not (tmp_path / "o").exists()
