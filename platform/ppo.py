"""`ladder ppo`: RLHF with our own PPO (TRL removed its PPOTrainer in 2026).

    accelerate launch -m ladder.ppo --config recipes/tiny/ppo.yaml

Actors: the policy (from SFT), a frozen reference (a copy, or the policy with its LoRA adapter
switched off), a critic (a scalar head per token, initialised from the reward model or the policy)
and the reward: the reward model through `ladder.rm.score`, reward functions from ladder.rewards,
or both with weights. Each step: sample completions -> score them -> per-token KL penalty to the
reference and a penalty for never ending -> GAE advantages (whitened) -> a few epochs of clipped
policy and value updates. The maths lives in ladder.ppo_math.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from ladder.config import load_config, to_dict
from ladder.errors import LadderError
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.runtime import cpu_training_defaults, setup_process


@dataclass
class PPOStageConfig(LoraOptions, TrainingArguments):
    model: str = "runs/tiny/sft"
    reward_model: str | None = "runs/tiny/rm"  # scored through ladder.rm.score (re-tokenised text)
    reward_model_weight: float = 1.0
    rewards: list = field(default_factory=list)  # plus reward functions: names / module:fn / file.py:fn
    critic_init: str = "reward_model"  # reward_model, policy, or a checkpoint path
    data: str = "runs/tiny/data"
    data_name: str | None = None
    train_split: str = "train"
    test_split: str | None = "test"
    max_train_samples: int | None = None
    eval_samples: int = 100
    # PPO
    num_ppo_epochs: int = 2
    num_mini_batches: int = 2
    response_length: int = 64
    temperature: float = 1.0
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.5
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05
    kl_estimator: str = "k1"  # k1 or k3
    adaptive_kl: bool = False
    kl_target: float = 6.0  # for the adaptive controller (nats per sequence)
    kl_horizon: int = 10000
    target_kl: float | None = None  # stop the epochs of a step early past this approx-KL
    missing_eos_penalty: float = 1.0
    whiten_rewards: bool = False
    critic_learning_rate: float | None = None  # default: learning_rate
    resume: bool = False
    keep_checkpoints: int = 2
    # defaults for the tiny ladder
    output_dir: str = "runs/tiny/ppo"
    max_steps: int = 40
    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 32  # prompts per PPO step (per process)
    logging_steps: int = 5
    save_steps: int = 20
    report_to: list[str] | str | None = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self):
        cpu_training_defaults(self)
        if self.kl_estimator not in ("k1", "k3"):
            raise LadderError(f"kl_estimator must be k1 or k3, got '{self.kl_estimator}'")
        self.check_lora()
        if self.per_device_train_batch_size % self.num_mini_batches:
            raise LadderError(f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be divisible "
                              f"by num_mini_batches ({self.num_mini_batches})")
        super().__post_init__()


# ---------------------------------------------------------------- actors

def load_actors(cfg: PPOStageConfig):
    """policy, reference (None with LoRA: the adapter is switched off instead), critic, tokenizer."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from ladder.sft import load_tokenizer

    tokenizer, resized = load_tokenizer(cfg.model)
    policy = AutoModelForCausalLM.from_pretrained(cfg.model)
    if resized:
        policy.resize_token_embeddings(len(tokenizer))
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    reference = None
    if cfg.use_lora:
        if cfg.load_in_4bit:
            check_qlora()
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(cfg))
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)

    source = {"reward_model": cfg.reward_model, "policy": cfg.model}.get(cfg.critic_init, cfg.critic_init)
    if source == cfg.reward_model and AutoTokenizer.from_pretrained(source).get_vocab() != tokenizer.get_vocab():
        raise LadderError(f"critic_init: reward_model needs the reward model ({source}) to share the policy's "
                          "tokenizer (the critic reads policy tokens); use critic_init: policy")
    critic = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    critic.config.pad_token_id = tokenizer.pad_token_id
    return policy, reference, Critic(critic), tokenizer


def check_inputs(cfg: PPOStageConfig) -> None:
    """Everything cheap, before any model is loaded."""
    from ladder.manifest import has_manifest

    if not cfg.reward_model and not cfg.rewards:
        raise LadderError("ppo: no reward source: set reward_model and/or rewards")
    if cfg.reward_model and not (Path(cfg.reward_model) / "config.json").is_file():
        raise LadderError(f"reward_model '{cfg.reward_model}': not a model directory")
    if cfg.critic_init == "reward_model" and not cfg.reward_model:
        raise LadderError("critic_init: reward_model needs a reward_model (or use critic_init: policy)")
    if cfg.critic_init not in ("reward_model", "policy") and not (Path(cfg.critic_init) / "config.json").is_file():
        raise LadderError(f"critic_init '{cfg.critic_init}': no such checkpoint (or use reward_model / policy)")
    if not (Path(cfg.model) / "config.json").is_file() and has_manifest(cfg.model) is False and "/" not in cfg.model:
        raise LadderError(f"model '{cfg.model}': not found")


class Critic(torch.nn.Module):
    """One value per position: a sequence-classification model's backbone through its scalar head.

    A module of its own (not a function reaching into the model) so that DDP/DeepSpeed wrap its
    forward and synchronise its gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        backbone = getattr(self.model, self.model.base_model_prefix)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.model.score(hidden).squeeze(-1)


def response_logprobs(model, input_ids, attention_mask, n_prompt: int, temperature: float):
    """Log-probs of the response tokens (positions n_prompt..), and the logits that gave them."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, n_prompt - 1:-1]
    logits = logits / temperature
    targets = input_ids[:, n_prompt:]
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1), logits


# ---------------------------------------------------------------- rewards

class Rewarder:
    """Sequence scores: reward-model score and reward functions, weighted and summed."""

    def __init__(self, cfg: PPOStageConfig):
        from ladder.rewards import load_rewards

        self.cfg = cfg
        self.fns, self.weights = load_rewards(cfg.rewards) if cfg.rewards else ([], [])

    def validate(self, ds) -> None:
        from ladder.grpo import sample_batch
        from ladder.rewards import validate_rewards

        if self.fns:
            validate_rewards(self.fns, sample_batch(ds))

    def __call__(self, prompts, texts, rows) -> tuple[list[float], dict]:
        total = [0.0] * len(texts)
        parts = {}
        if self.cfg.reward_model:
            from ladder.rm import score

            rm = score(self.cfg.reward_model, prompts, texts)
            parts["rm_score"] = sum(rm) / len(rm)
            total = [t + self.cfg.reward_model_weight * r for t, r in zip(total, rm)]
        columns = {k: [r.get(k) for r in rows] for k in rows[0]} if rows else {}
        columns.pop("prompt", None)
        for fn, w in zip(self.fns, self.weights):
            values = fn(texts, prompts=prompts, **columns)
            got = [v for v in values if v is not None]
            parts[fn.__name__] = sum(got) / len(got) if got else 0.0
            total = [t + w * (v or 0.0) for t, v in zip(total, values)]
        return total, parts


# ---------------------------------------------------------------- the loop

def heldout(policy, tokenizer, rows, cfg) -> dict:
    from ladder.eval import evaluate_model

    stats = evaluate_model(policy, tokenizer, rows, chat=True, max_new_tokens=cfg.response_length,
                           reward_model=cfg.reward_model)
    return {k: stats[k] for k in ("accuracy", "format_rate", "rm_score") if k in stats}


def train(cfg: PPOStageConfig) -> dict:
    setup_process()
    check_inputs(cfg)
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from ladder import checkpoint
    from ladder import ppo_math as M
    from ladder.data.loaders import load_split
    from ladder.generation import build_prompt
    from ladder.runtime import check_engine

    ds = load_split(cfg.data, "rl", cfg.train_split, name=cfg.data_name, limit=cfg.max_train_samples)
    rewarder = Rewarder(cfg)
    rewarder.validate(ds)
    test_rows = list(load_split(cfg.data, "rl", cfg.test_split, name=cfg.data_name, limit=cfg.eval_samples)) \
        if cfg.test_split and cfg.eval_samples else []

    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              log_with=None if "none" in (cfg.report_to or ["none"]) else "tensorboard",
                              project_dir=str(Path(cfg.output_dir) / "logs"))
    check_engine(accelerator)
    torch.manual_seed(cfg.seed)
    policy, reference, critic, tokenizer = load_actors(cfg)
    metrics: dict = {}
    if test_rows and accelerator.is_main_process:
        metrics.update({f"before/{k}": v for k, v in heldout(policy, tokenizer, test_rows, cfg).items()})
    params = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
              {"params": list(critic.parameters()), "lr": cfg.critic_learning_rate or cfg.learning_rate}]
    optimizer = torch.optim.AdamW(params, eps=1e-5, weight_decay=0.0)
    policy, critic, optimizer = accelerator.prepare(policy, critic, optimizer)
    kl_ctl = M.AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl else None
    kl_coef = cfg.kl_coef
    if cfg.report_to and "none" not in cfg.report_to:
        accelerator.init_trackers("ppo")

    step = checkpoint.load_latest_state(accelerator, cfg.output_dir) if cfg.resume else 0
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    B, world = cfg.per_device_train_batch_size, accelerator.num_processes
    history, bar = [], tqdm(total=cfg.max_steps, initial=step, desc="ppo", disable=not accelerator.is_main_process)
    eos = tokenizer.eos_token_id
    start = time.time()
    while step < cfg.max_steps:
        # 1. a batch of prompts: position is a function of the step (resume lands on the same data)
        first = (step * B * world + accelerator.process_index * B) % len(ds)
        rows = [ds[order[(first + i) % len(ds)]] for i in range(B)]
        prompts = [r["prompt"] for r in rows]
        enc = tokenizer([build_prompt(tokenizer, p) for p in prompts], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False).to(accelerator.device)
        n_prompt = enc["input_ids"].shape[1]
        # 2. roll out
        with torch.no_grad():
            seq = accelerator.unwrap_model(policy).generate(
                **enc, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                max_new_tokens=cfg.response_length, pad_token_id=tokenizer.pad_token_id)
        response = seq[:, n_prompt:]
        is_eos = response == eos
        has_eos = is_eos.any(1)
        # mask: response tokens up to and including the first EOS
        after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
        mask = (~after_eos).float()
        attention = torch.cat([enc["attention_mask"], mask.long()], 1)
        texts = tokenizer.batch_decode(response.masked_fill(after_eos, tokenizer.pad_token_id),
                                       skip_special_tokens=True)
        # 3. score, penalise never-ending answers
        scores, parts = rewarder(prompts, texts, rows)
        scores = M.eos_penalty(torch.tensor(scores, device=seq.device), has_eos, cfg.missing_eos_penalty)
        # 4. old log-probs, reference log-probs, values
        with torch.no_grad():
            old_logprobs, _ = response_logprobs(policy, seq, attention, n_prompt, cfg.temperature)
            if reference is not None:
                ref_logprobs, _ = response_logprobs(reference.to(seq.device), seq, attention, n_prompt,
                                                    cfg.temperature)
            else:
                with accelerator.unwrap_model(policy).disable_adapter():
                    ref_logprobs, _ = response_logprobs(policy, seq, attention, n_prompt, cfg.temperature)
            old_values = critic(seq, attention)[:, n_prompt - 1:-1]
            kl = M.kl_per_token(old_logprobs, ref_logprobs, cfg.kl_estimator)
            rewards = M.token_rewards(scores, kl, mask, kl_coef)
            if cfg.whiten_rewards:
                rewards = M.masked_whiten(rewards, mask, shift_mean=False)
            advantages, returns = M.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = M.masked_whiten(advantages, mask)
        # 5. a few epochs of clipped updates on minibatches
        stats = {"pg_clipfrac": [], "vf_clipfrac": [], "approx_kl": [], "entropy": [], "vf_loss": [], "pg_loss": []}
        mb = B // cfg.num_mini_batches
        stop = False
        for _ in range(cfg.num_ppo_epochs):
            for idx in torch.randperm(B).split(mb):
                with accelerator.accumulate(policy, critic):
                    logprobs, logits = response_logprobs(policy, seq[idx], attention[idx], n_prompt, cfg.temperature)
                    values = critic(seq[idx], attention[idx])[:, n_prompt - 1:-1]
                    pg, pg_clip, approx_kl = M.policy_loss(logprobs, old_logprobs[idx], advantages[idx],
                                                           mask[idx], cfg.cliprange)
                    vf, vf_clip = M.value_loss(values, old_values[idx], returns[idx], mask[idx], cfg.cliprange_value)
                    accelerator.backward(pg + cfg.vf_coef * vf)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_([p for g in params for p in g["params"]], cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    ent = M.masked_mean(M.entropy_from_logits(logits), mask[idx])
                for k, v in zip(stats, (pg_clip, vf_clip, approx_kl, ent, vf, pg)):
                    stats[k].append(v.item())
                if cfg.target_kl is not None and approx_kl.item() > cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        step += 1
        bar.update(1)
        kl_seq = (kl * mask).sum(1).mean().item()
        if kl_ctl is not None:
            kl_coef = kl_ctl.update(kl_seq, B * world)
        log = {"reward": scores.mean().item(), "kl": kl_seq, "kl_coef": kl_coef,
               "length": mask.sum(1).mean().item(), "no_eos": 1 - has_eos.float().mean().item(),
               **{k: sum(v) / len(v) for k, v in stats.items() if v}, **parts}
        history.append({"step": step, **{k: round(v, 5) for k, v in log.items()}})
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            bar.set_postfix(reward=f"{log['reward']:.3f}", kl=f"{kl_seq:.3f}")
            accelerator.log({f"ppo/{k}": v for k, v in log.items()}, step=step)
            if accelerator.is_main_process and texts:
                accelerator.print(f"\nstep {step} sample: {texts[0][:120]!r} -> {scores[0].item():.2f}")
        if cfg.save_steps and step % cfg.save_steps == 0 and step < cfg.max_steps:
            checkpoint.save_state(accelerator, cfg.output_dir, step, cfg.keep_checkpoints)
    bar.close()
    metrics.update({"steps": step, "seconds": round(time.time() - start, 1),
                    "reward_first": history[0]["reward"] if history else None,
                    "reward_last": history[-1]["reward"] if history else None,
                    "reward_model": cfg.reward_model, "world_size": accelerator.num_processes})
    final = accelerator.unwrap_model(policy)
    if cfg.use_lora:
        final = final.merge_and_unload()
    if accelerator.is_main_process:
        if test_rows:
            metrics.update({f"after/{k}": v for k, v in heldout(final, tokenizer, test_rows, cfg).items()})
        checkpoint.export(cfg.output_dir, final, tokenizer, stage="ppo", parent=cfg.model, config=to_dict(cfg),
                          metrics=metrics, history=history)
        print(f"ppo: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def main(argv=None) -> int:
    train(load_config(PPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.cli import stage_entry

    stage_entry(main)
