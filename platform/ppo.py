"""`ladder ppo`: RLHF with our own PPO (TRL removed its PPOTrainer in 2026).

    accelerate launch -m ladder.ppo --config recipes/tiny/ppo.yaml

Actors: the policy (from SFT), a frozen reference (a copy, or the policy with its LoRA adapter
switched off), a critic (a scalar head per token, initialised from the reward model or the policy)
and the reward: the reward model through `ladder.models.score`, reward functions from ladder.rewards,
or both with weights. Each step, in four phases (functions below, each returning a small dataclass):
1. roll_out: sample one completion per prompt (ladder.samplers: HF generate, in-process vLLM or a vLLM
   server) and score it, with a penalty for never ending -> Samples;
2. estimate_advantages: old and reference log-probs and values -> per-token KL penalty to the
   reference -> GAE advantages (whitened) and returns -> Experience;
3. update: a few epochs of clipped policy and value updates on minibatches -> UpdateStats;
4. step_log: means over ranks, for the history, TensorBoard and the KL controller.
The maths lives in ladder.ppo_math, the samplers in ladder.samplers; this file is the loop.

Batch sizes, per process: `per_device_train_batch_size` prompts are rolled out per step, split into
`num_mini_batches` minibatches (one optimizer step each, `num_ppo_epochs` passes), each minibatch
run as `gradient_accumulation_steps` micro-batches (memory only: it does not change the maths).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig

from ladder.config import load_config, option, to_dict
from ladder.data.loaders import DataOptions
from ladder.errors import LadderError
from ladder.lora import LoraOptions, check_qlora, lora_config
from ladder.runtime import cpu_training_defaults, end_training, say_rank, setup_process
from ladder.samplers import Rollout


@dataclass
class PPOStageConfig(DataOptions, LoraOptions):
    model: str = option("runs/tiny/sft", "the policy to start from: the SFT checkpoint (a dir or hub id)")
    reward_model: str | None = option("runs/tiny/rm", "scored through ladder.models.score (re-tokenised text)")
    reward_model_weight: float = option(1.0, "weight of the reward model's score in the reward")
    rewards: list = option(factory=list, help="plus reward functions: names / module:fn / file.py:fn")
    critic_init: str = option("reward_model", "reward_model, policy, or a checkpoint path")
    eval_samples: int = option(100, "held-out prompts answered greedily before and after (accuracy, RM score)")
    # sampled answers per held-out prompt (accuracy_sampled, rm_score_sampled): one sample per prompt
    # leaves the mean RM score noisy (sd/sqrt(n) ~0.2 on the tiny ladder's 64 prompts), larger than
    # the gains to see
    eval_generations: int = option(
        4, "sampled answers per held-out prompt (accuracy_sampled, rm_score_sampled); 0: greedy only")
    heldout_every: int = option(0, "greedy held-out scores every this many steps (0: never): the curves in the report")
    # functions scored on held-out answers for evaluation only, never a reward (e.g. the tiny ladder's
    # hidden human, ladder.data.human:human_style): does what the reward model learnt match what it meant?
    judge: list[str] = option(
        factory=list,
        help="functions that score held-out answers for evaluation only, never a reward (module:fn or file.py:fn)")
    # PPO
    num_ppo_epochs: int = option(2, "passes over each step's rollouts")
    num_mini_batches: int = option(2, "minibatches per pass: one optimizer step each")
    response_length: int = option(64, "tokens sampled per response")
    temperature: float = option(
        1.0, "sampling temperature of the rollouts (the log-probs are taken at the same temperature)")
    rollout_backend: str = option(
        "hf", "\"hf\" (transformers generate) or \"vllm\" (ladder.rollout, exact weight sync)")
    # vLLM: "colocate" (an engine in each training process) or "server" (a `ladder vllm-serve` elsewhere:
    # other GPUs or another node; on CPU the same machine, synced through a file)
    vllm_mode: str = option(
        "colocate", "colocate (an engine in each training process) or server (a `ladder vllm-serve` process)")
    vllm_server_base_url: str | None = option(None, "default http://{vllm_server_host}:{vllm_server_port}")
    vllm_server_host: str = option("127.0.0.1", "the server's host, when vllm_server_base_url is unset")
    vllm_server_port: int = option(8000, "the server's port, when vllm_server_base_url is unset")
    vllm_server_timeout: float = option(240.0, "seconds to wait for the server to come up")
    # colocate on CUDA: the share of each GPU's memory the engine may take (weights, activations, KV cache);
    # the trainer's models, gradients and optimizer state need the rest (TRL's name and default)
    vllm_gpu_memory_utilization: float = option(
        0.3, "colocate on CUDA: the share of GPU memory the engine may take (TRL's name)")
    cliprange: float = option(0.2, "policy ratio clipping (PPO's epsilon)")
    cliprange_value: float = option(0.2, "value clipping around the old values")
    vf_coef: float = option(0.5, "weight of the value loss")
    gamma: float = option(1.0, "discount factor for GAE")
    lam: float = option(0.95, "GAE lambda")
    kl_coef: float = option(0.05, "per-token KL penalty to the reference, subtracted from the reward")
    kl_estimator: str = option("k1", "k1 (log-ratio) or k3 (always >= 0, lower variance)")
    adaptive_kl: bool = option(False, "InstructGPT controller: move kl_coef so the KL tracks kl_target")
    kl_target: float = option(6.0, "nats per sequence, for the adaptive controller")
    kl_horizon: int = option(10000, "adaptive controller: samples over which kl_coef adapts")
    target_kl: float | None = option(None, "stop a step's update epochs early once approx-KL passes this")
    missing_eos_penalty: float = option(1.0, "subtracted from the score of completions that never end")
    whiten_rewards: bool = option(False, "whiten the per-token rewards before GAE")
    critic_learning_rate: float | None = option(None, "default: learning_rate")
    # First steps train only the critic. A critic from the policy starts with a random value head, and
    # its noise, passed through GAE into the advantages, moves the policy at random (entropy rises,
    # accuracy falls) until the values mean something.
    critic_warmup_steps: int = option(
        0, "first steps that train only the critic (a fresh value head's noise would move the policy)")
    resume: bool = option(False, "continue from the newest saved state in output_dir")
    keep_checkpoints: int = option(2, "resumable states kept in output_dir/checkpoints")
    # Training: the names of transformers' TrainingArguments, but only those this loop reads (its own
    # loop, not a Trainer: any other TrainingArguments key is refused rather than silently ignored)
    output_dir: str = option("runs/tiny/ppo", "where the checkpoint and ladder.json are written")
    max_steps: int = option(40, "PPO steps (rollout + update); <= 0: num_train_epochs passes over the prompts")
    num_train_epochs: float = option(1.0, "passes over the prompts, when max_steps <= 0")
    per_device_train_batch_size: int = option(32, "prompts rolled out per PPO step (per process)")
    gradient_accumulation_steps: int = option(1, "micro-batches per minibatch: memory only, the maths is the same")
    # Off by default, as in ladder's SFT, RM and DPO: for memory (larger models, GPUs). SmolLM2-135M on the
    # CPU in bf16, 3 steps of recipes/smollm2/ppo.yaml with HF rollouts: 77.2 s off, 79.9 s on, the same numbers
    gradient_checkpointing: bool = option(
        False, "recompute each layer's activations in the backward of the updates: memory for time")
    learning_rate: float = option(
        2e-5, "the initial learning rate of the policy's AdamW (and the critic's, unless set)")
    lr_scheduler_type: str = option("linear", "any transformers scheduler name (get_scheduler)")
    warmup_steps: float = option(0, "optimizer steps of linear warm-up; a float below 1: a share of all of them")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW's betas and epsilon")
    adam_beta2: float = option(0.999, "AdamW beta2")
    adam_epsilon: float = option(1e-8, "AdamW epsilon")
    max_grad_norm: float = option(1.0, "0: no clipping")
    bf16: bool | None = option(
        None, "bf16 mixed precision (autocast); unset: where the hardware has it (ladder.precision)")
    fp16: bool = option(False, "fp16 mixed precision (autocast, with a gradient scaler on GPUs)")
    seed: int = option(42, "prompts' order, sampling and any fresh weights")
    logging_steps: int = option(5, "history and TensorBoard every this many steps")
    save_steps: int = option(20, "resumable state every this many steps; 0 or save_strategy \"no\": none")
    save_strategy: str = option("steps", "or \"no\"")
    report_to: list[str] | str | None = option(factory=lambda: ["tensorboard"], help="tensorboard or none")

    def __post_init__(self):
        cpu_training_defaults(self)
        if self.temperature <= 0:
            raise LadderError(f"temperature must be > 0 (PPO samples its rollouts), got {self.temperature}")
        if self.kl_estimator not in ("k1", "k3"):
            raise LadderError(f"kl_estimator must be k1 or k3, got '{self.kl_estimator}'")
        self.check_lora()
        micro = self.num_mini_batches * self.gradient_accumulation_steps
        if self.per_device_train_batch_size % micro:
            raise LadderError(f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be divisible "
                              f"by num_mini_batches x gradient_accumulation_steps ({micro})")
        if self.rollout_backend not in ("hf", "vllm"):
            raise LadderError(f"rollout_backend must be hf or vllm, got '{self.rollout_backend}'")
        if self.vllm_mode not in ("colocate", "server"):
            raise LadderError(f"vllm_mode must be colocate or server, got '{self.vllm_mode}'")
        if self.rollout_backend == "vllm" and self.vllm_mode == "colocate":
            from ladder.runtime import vllm_available

            if not vllm_available():
                raise LadderError("rollout_backend: vllm, but vLLM is not installed (pip install -e '.[cpu]' or "
                                  "'.[gpu]'); or use rollout_backend: hf")
        if self.adaptive_kl and self.kl_target <= 0:
            raise LadderError("adaptive_kl needs kl_target > 0")
        if self.bf16 and self.fp16:
            raise LadderError("bf16 and fp16 are both set: choose one")
        if isinstance(self.report_to, str):
            self.report_to = [] if self.report_to in ("none", "") else [self.report_to]

    @property
    def saves(self) -> bool:
        return bool(self.save_steps) and self.save_strategy != "no"

    def warmup(self, updates: int) -> int:
        """Warm-up optimizer steps: `warmup_steps` as a count, or below 1 as a share of `updates`."""
        return int(self.warmup_steps) if self.warmup_steps >= 1 else math.ceil(self.warmup_steps * updates)


# ---------------------------------------------------------------- inputs and actors

def is_model(ref: str) -> bool:
    """A local model directory, or (no such path here) something shaped like a hub id `org/name`."""
    path = Path(ref)
    if path.exists():
        return (path / "config.json").is_file()
    return ref.count("/") == 1 and not ref.startswith((".", "/"))


def same_vocab(a: str, b: str) -> bool:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(a).get_vocab() == AutoTokenizer.from_pretrained(b).get_vocab()
    except Exception as e:
        raise LadderError(f"cannot load the tokenizers of '{a}' and '{b}' ({str(e).splitlines()[0][:160]})") from None


def critic_source(cfg: PPOStageConfig) -> str:
    return {"reward_model": cfg.reward_model, "policy": cfg.model}.get(cfg.critic_init, cfg.critic_init)


def check_inputs(cfg: PPOStageConfig) -> None:
    """Everything cheap (files, tokenizers), before any data or model is loaded."""
    if not cfg.reward_model and not cfg.rewards:
        raise LadderError("ppo: no reward source: set reward_model and/or rewards")
    if not is_model(cfg.model):
        raise LadderError(f"model '{cfg.model}': not a model directory (train SFT first) or hub id")
    if cfg.reward_model and not is_model(cfg.reward_model):
        raise LadderError(f"reward_model '{cfg.reward_model}': not a model directory or hub id")
    if cfg.critic_init == "reward_model" and not cfg.reward_model:
        raise LadderError("critic_init: reward_model needs a reward_model (or use critic_init: policy)")
    if cfg.critic_init not in ("reward_model", "policy") and not (Path(cfg.critic_init) / "config.json").is_file():
        raise LadderError(f"critic_init '{cfg.critic_init}': no such checkpoint (or use reward_model / policy)")
    # The reward model reads re-tokenised text, so its tokenizer may differ; the critic reads the
    # policy's tokens, so the checkpoint it starts from must share the policy's vocabulary.
    source = critic_source(cfg)
    if source != cfg.model and not same_vocab(source, cfg.model):
        raise LadderError(f"critic_init '{cfg.critic_init}' ({source}) has a different tokenizer from the policy; "
                          "the critic reads policy tokens: use critic_init: policy")
    if cfg.use_lora and cfg.load_in_4bit:
        check_qlora()


class Critic(torch.nn.Module):
    """One value per position: a sequence-classification model's backbone through its scalar head.

    A module of its own (not a function reaching into the model) so that DDP/DeepSpeed wrap its
    forward and synchronise its gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        backbone = getattr(self.model, self.model.base_model_prefix)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=positions(attention_mask)).last_hidden_state
        head = self.model.score if hasattr(self.model, "score") else self.model.classifier
        return head(hidden).squeeze(-1)


class ActorCritic(torch.nn.Module):
    """The two trained models as one module, so that every engine wraps them as one: DeepSpeed builds
    one engine per model (and one optimizer for it), and DDP syncs one module's gradients per backward.
    One forward gives what an update needs: the response tokens' log-probs (and logits) and values."""

    def __init__(self, policy, critic: Critic):
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, seq, attention, n_prompt: int, temperature: float):
        logprobs, logits = response_logprobs(self.policy, seq, attention, n_prompt, temperature)
        values = self.critic(seq, attention)[:, n_prompt - 1:-1]  # V(state before each response token)
        return logprobs, logits, values


def enable_checkpointing(policy, critic: Critic) -> None:
    """Gradient checkpointing on both trained models (transformers' own, non-reentrant)."""
    for model in (policy, critic.model):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextlib.contextmanager
def checkpointing(model):
    """transformers checkpoints a layer only while the layer is in training mode, and PPO keeps its models
    in eval mode (dropout off: the ratio must compare one function). So for the updates the flag is set on
    the checkpointed layers alone (none unless enable_checkpointing ran), not on their children: their
    dropout stays off, and rollouts and no-grad passes (which keep their KV cache) never see it."""
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    for m in layers:
        m.training = True
    try:
        yield
    finally:
        for m in layers:
            m.training = False


def load_actors(cfg: PPOStageConfig):
    """policy, reference (None with LoRA: the adapter is switched off instead), critic, tokenizer."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from ladder import attention
    from ladder.distributed import zero3_off
    from ladder.models import load_tokenizer

    tokenizer, resized = load_tokenizer(cfg.model)
    with zero3_off():  # whole models on every rank; under ZeRO-3 `prepare` shards the trained ones
        policy = attention.use(AutoModelForCausalLM.from_pretrained(cfg.model))
        critic = attention.use(AutoModelForSequenceClassification.from_pretrained(critic_source(cfg), num_labels=1))
        critic.eval()
    if resized:  # the chat tokens were added: every model that reads the policy's tokens needs rows for them
        policy.resize_token_embeddings(len(tokenizer))
        critic.resize_token_embeddings(len(tokenizer))
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    reference = None
    if cfg.use_lora:
        from peft import get_peft_model

        policy = get_peft_model(policy, lora_config(cfg))
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    # Dropout stays off (eval mode) throughout: the probability ratio must compare one function.
    policy.eval()
    critic.config.pad_token_id = tokenizer.pad_token_id
    return policy, reference, Critic(critic), tokenizer


# ---------------------------------------------------------------- log-probs and samplers

def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` uses: without them a left-padded row
    would be scored at other positions than it was sampled at."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def response_logprobs(model, seq, attention, n_prompt: int, temperature: float):
    """Log-probs of the response tokens (positions n_prompt..) and the logits that gave them;
    only the response positions' logits are computed."""
    keep = seq.shape[1] - n_prompt + 1
    logits = model(input_ids=seq, attention_mask=attention, position_ids=positions(attention),
                   logits_to_keep=keep).logits[:, :-1].float() / temperature
    targets = seq[:, n_prompt:]
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1), logits


def server_sampler(cfg: PPOStageConfig, accelerator):
    """vllm_mode server: connects now, so a server that is not there fails before any model loads."""
    from ladder.samplers import ServerSampler

    url = cfg.vllm_server_base_url or f"http://{cfg.vllm_server_host}:{cfg.vllm_server_port}"
    return ServerSampler(url, cfg.temperature, cfg.response_length, timeout=cfg.vllm_server_timeout,
                         accelerator=accelerator)


def local_sampler(cfg: PPOStageConfig, policy, tokenizer, ds, accelerator):
    """HF generate on the policy itself, or an in-process vLLM engine sized for this run (context =
    longest prompt + response_length; ranks seeded apart)."""
    from ladder.samplers import HFSampler, VLLMSampler

    if cfg.rollout_backend != "vllm":
        return HFSampler(cfg.temperature, cfg.response_length, autocast=accelerator.autocast)
    from ladder.generation import build_prompt

    path = cfg.model
    if policy.config.vocab_size != AutoConfig.from_pretrained(cfg.model).vocab_size:
        # the chat tokens were added here: vLLM loads from disk, so give it the resized checkpoint
        path = str(Path(cfg.output_dir) / "rollout-start")
        base = policy.get_base_model() if cfg.use_lora else policy
        base.save_pretrained(path)
        tokenizer.save_pretrained(path)
    longest = max(len(tokenizer(build_prompt(tokenizer, p), add_special_tokens=False)["input_ids"])
                  for p in ds["prompt"])
    return VLLMSampler(path, cfg.temperature, cfg.response_length,
                       max_model_len=min(longest + cfg.response_length + 8, policy.config.max_position_embeddings),
                       max_num_seqs=cfg.per_device_train_batch_size, seed=cfg.seed + accelerator.process_index,
                       gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, bf16=bool(cfg.bf16))


# ---------------------------------------------------------------- rewards

class Rewarder:
    """Sequence scores: reward-model score and reward functions, weighted and summed."""

    def __init__(self, cfg: PPOStageConfig):
        from ladder.rewards import load_rewards

        self.cfg = cfg
        self.fns, self.weights = load_rewards(cfg.rewards) if cfg.rewards else ([], [])

    def validate(self, ds) -> None:
        from ladder.rewards import sample_batch, validate_rewards

        if self.fns:
            validate_rewards(self.fns, sample_batch(ds), where=self.cfg.data)

    def __call__(self, prompts, texts, rows) -> tuple[list[float], dict]:
        """(total score per completion, mean of each part for the logs)."""
        total = [0.0] * len(texts)
        parts = {}
        if self.cfg.reward_model:
            from ladder.models import score

            rm = score(self.cfg.reward_model, prompts, texts)
            check_finite(rm, f"reward model '{self.cfg.reward_model}'", texts)
            parts["rm_score"] = sum(rm) / len(rm)
            total = [t + self.cfg.reward_model_weight * r for t, r in zip(total, rm)]
        # TRL's calling convention: chat prompts get chat completions, plus every dataset column
        completions = [[{"role": "assistant", "content": t}] for t in texts] \
            if prompts and isinstance(prompts[0], list) else texts
        columns = {k: [r.get(k) for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
        for fn, w in zip(self.fns, self.weights):
            values = fn(completions, prompts=prompts, **columns)
            check_finite(values, f"reward '{fn.__name__}'", texts)
            got = [v for v in values if v is not None]
            parts[fn.__name__] = sum(got) / len(got) if got else 0.0
            total = [t + w * (v or 0.0) for t, v in zip(total, values)]
        return total, parts


def check_finite(values, source: str, texts) -> None:
    """A NaN (or inf) score would turn every advantage, and then the weights, into NaN: stop, naming the
    reward and the completion that got it."""
    for v, text in zip(values, texts):
        if v is not None and not math.isfinite(v):
            raise LadderError(f"{source} returned {v} during training, for the completion {text[:60]!r}")


# ---------------------------------------------------------------- loop state, prompts, held-out scores

class LoopState:
    """What the loop carries from step to step besides weights and optimizer: the KL coefficient
    (it moves under the adaptive controller) and the per-step history. Registered with accelerate,
    so it is saved and restored with the rest of a training state."""

    def __init__(self, cfg: PPOStageConfig):
        from ladder.ppo_math import AdaptiveKLController

        self.kl_coef = cfg.kl_coef
        self.controller = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl else None
        self.history: list[dict] = []

    def update_kl(self, kl: float, n_samples: int) -> None:
        if self.controller is not None:
            self.kl_coef = self.controller.update(kl, n_samples)

    def state_dict(self) -> dict:
        return {"kl_coef": self.kl_coef, "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.kl_coef, self.history = state["kl_coef"], list(state["history"])
        if self.controller is not None:
            self.controller.value = self.kl_coef


def prompt_batch(ds, step: int, rank: int, batch: int, world: int, seed: int) -> list[dict]:
    """The rows rank `rank` rolls out at `step`: a function of the step alone, so a resumed run
    sees the same prompts; reshuffled every pass over the data."""
    n = len(ds)
    first = step * batch * world + rank * batch
    return [ds[shuffled(n, seed + i // n)[i % n]] for i in range(first, first + batch)]


@functools.lru_cache(maxsize=4)
def shuffled(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def heldout(policy, tokenizer, rows, cfg, judges: dict, sampled: bool = True) -> dict:
    """ladder.evaluation.heldout at PPO's response length; sampled at the training temperature."""
    from ladder.evaluation import heldout as evaluate

    return evaluate(policy, tokenizer, rows, max_new_tokens=cfg.response_length, reward_model=cfg.reward_model,
                    judges=judges, samples=cfg.eval_generations if sampled else 0, temperature=cfg.temperature,
                    seed=cfg.seed)


# ---------------------------------------------------------------- one PPO step, in phases

@dataclass
class Samples:
    """Phase 1 of a step: one response per prompt, scored."""
    ro: Rollout
    prompts: list
    scores: torch.Tensor  # [B] reward-model score + rewards, minus the missing-EOS penalty
    parts: dict  # the mean of each part of the score, for the logs


@dataclass
class Experience:
    """Phase 2: the samples and what the updates need, per response token."""
    samples: Samples
    old_logprobs: torch.Tensor  # [B, R] the policy's, as it sampled (before this step's updates)
    old_values: torch.Tensor  # [B, R]
    kl: torch.Tensor  # [B, R] per-token KL to the reference
    advantages: torch.Tensor  # [B, R] GAE, whitened
    returns: torch.Tensor  # [B, R] the critic's targets


@dataclass
class UpdateStats:
    """Phase 3: the mean of each loss term over the step's micro-batches, and whether target_kl stopped it."""
    losses: dict
    stopped: bool


def roll_out(sampler, actor, tokenizer, rewarder, rows, seeds, cfg: PPOStageConfig) -> Samples:
    """1. Sample one response per prompt, score it, penalise responses that never end."""
    from ladder.ppo_math import eos_penalty

    prompts = [r["prompt"] for r in rows]
    ro = sampler(actor, tokenizer, prompts, seeds)
    raw, parts = rewarder(prompts, ro.texts, rows)
    scores = eos_penalty(torch.tensor(raw, device=ro.seq.device), ro.has_eos, cfg.missing_eos_penalty)
    return Samples(ro, prompts, scores, parts)


@torch.no_grad()
def estimate_advantages(model, actor, reference, accelerator, samples: Samples, kl_coef: float,
                        cfg: PPOStageConfig) -> Experience:
    """2. Old and reference log-probs and values -> per-token rewards (score at the end, KL penalty on every
    token) -> GAE advantages and returns."""
    from ladder import ppo_math as M

    ro = samples.ro
    seq, attention, mask, n_prompt = ro.seq, ro.attention, ro.mask, ro.n_prompt
    old_logprobs, _, old_values = model(seq, attention, n_prompt, cfg.temperature)
    # under the autocast the prepared model's forward has: otherwise, with mixed precision, the KL
    # (and so the reward) would measure bf16 rounding, not how far the policy moved
    with accelerator.autocast():
        if reference is not None:
            ref_logprobs, _ = response_logprobs(reference, seq, attention, n_prompt, cfg.temperature)
        else:
            with actor.disable_adapter():
                ref_logprobs, _ = response_logprobs(actor, seq, attention, n_prompt, cfg.temperature)
    kl = M.kl_per_token(old_logprobs, ref_logprobs, cfg.kl_estimator)
    rewards = M.token_rewards(samples.scores, kl, mask, kl_coef)
    if cfg.whiten_rewards:
        rewards = M.masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = M.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
    return Experience(samples, old_logprobs, old_values, kl, M.masked_whiten(advantages, mask),
                      returns)


def update(model, optimizer, scheduler, params, accelerator, exp: Experience, cfg: PPOStageConfig,
           warming_up: bool) -> UpdateStats:
    """3. Epochs of clipped policy and value updates: one optimizer step per minibatch."""
    from ladder import ppo_math as M

    ro = exp.samples.ro
    B = cfg.per_device_train_batch_size
    mb, micro = B // cfg.num_mini_batches, B // cfg.num_mini_batches // cfg.gradient_accumulation_steps
    deepspeed = accelerator.state.deepspeed_plugin is not None
    losses = {k: [] for k in ("pg_loss", "vf_loss", "pg_clipfrac", "vf_clipfrac", "approx_kl", "entropy")}
    for _ in range(cfg.num_ppo_epochs):
        for mb_idx in torch.randperm(B).split(mb):
            for idx in mb_idx.split(micro):
                with accelerator.accumulate(model), checkpointing(model):
                    logprobs, logits, values = model(ro.seq[idx], ro.attention[idx], ro.n_prompt, cfg.temperature)
                    pg, pg_clip, approx_kl = M.policy_loss(logprobs, exp.old_logprobs[idx], exp.advantages[idx],
                                                           ro.mask[idx], cfg.cliprange)
                    vf, vf_clip = M.value_loss(values, exp.old_values[idx], exp.returns[idx], ro.mask[idx],
                                               cfg.cliprange_value)
                    # during critic warm-up the policy's loss is scaled to 0, not dropped: DDP
                    # expects a gradient for every parameter in every backward
                    accelerator.backward((0.0 if warming_up else 1.0) * pg + cfg.vf_coef * vf)
                    if accelerator.sync_gradients and warming_up and not deepspeed:
                        # AdamW skips a parameter without a gradient: the policy's moments, step count and
                        # weights stay as they were (a zero gradient would still step them). DeepSpeed's
                        # flat partitions cannot skip a group: there the policy's Adam state does step.
                        for p in params[0]["params"]:
                            p.grad = None
                    if accelerator.sync_gradients and cfg.max_grad_norm and not deepspeed:
                        # each model on its own: the critic's large early gradients must not shrink the
                        # policy's (DeepSpeed clips all gradients together: its config's gradient_clipping).
                        # Unscaled once (fp16): a GradScaler refuses a second unscale_ before its step.
                        accelerator.unscale_gradients()
                        for group in params:
                            torch.nn.utils.clip_grad_norm_([p for p in group["params"] if p.grad is not None],
                                                           cfg.max_grad_norm)
                    optimizer.step()  # a no-op until the minibatch's last micro-batch
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    entropy = M.masked_mean(M.entropy_from_logits(logits), ro.mask[idx])
                for k, v in zip(losses, (pg, vf, pg_clip, vf_clip, approx_kl, entropy)):
                    losses[k].append(v.item())
            if cfg.target_kl is not None:  # decided on the mean over ranks, so all ranks stop together
                recent = torch.tensor(losses["approx_kl"][-(mb // micro):], device=ro.seq.device).mean()
                if accelerator.reduce(recent, "mean").item() > cfg.target_kl:
                    return UpdateStats(losses, stopped=True)
    return UpdateStats(losses, stopped=False)


def step_log(accelerator, exp: Experience, stats: UpdateStats) -> dict:
    """4. What the step did, as means over all ranks."""
    ro, mask = exp.samples.ro, exp.samples.ro.mask
    local = {"reward": exp.samples.scores.mean(), "kl": (exp.kl * mask).sum(1).mean(), "length": mask.sum(1).mean(),
             "no_eos": 1 - ro.has_eos.float().mean(),
             **({"sampler_logprob_gap": ((ro.sampler_logprobs - exp.old_logprobs).abs() * mask).max()}
                if ro.sampler_logprobs is not None else {}),
             **{k: torch.tensor(sum(v) / len(v)) for k, v in stats.losses.items() if v},
             **{k: torch.tensor(float(v)) for k, v in exp.samples.parts.items()}}
    keys = sorted(local)
    means = accelerator.reduce(torch.stack([local[k].float().to(ro.seq.device) for k in keys]), "mean").tolist()
    return dict(zip(keys, means))


def train(cfg: PPOStageConfig) -> dict:
    setup_process()
    check_inputs(cfg)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from ladder import checkpoint
    from ladder.data.loaders import load_split
    from ladder.distributed import gathered_copy, is_zero3, zero3_off
    from ladder.evaluation import curve_point, load_judges
    from ladder.runtime import check_engine, process_group_kwargs, reset_accelerate

    # ---- data, rewards, judges: every check before any model loads
    split = functools.partial(load_split, cfg.data, "rl", name=cfg.data_name, transform=cfg.data_transform)
    ds = split(cfg.train_split, limit=cfg.max_train_samples)
    rewarder = Rewarder(cfg)
    rewarder.validate(ds)
    judges = load_judges(cfg.judge)
    test_rows = list(split(cfg.test_split, limit=cfg.eval_samples)) if cfg.test_split and cfg.eval_samples else []

    # ---- engine: DDP or DeepSpeed, mixed precision, trackers
    tensorboard = "tensorboard" in (cfg.report_to or []) or "all" in (cfg.report_to or [])
    reset_accelerate()
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              kwargs_handlers=process_group_kwargs(),
                              mixed_precision="bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "no",
                              log_with="tensorboard" if tensorboard else None,
                              project_dir=str(Path(cfg.output_dir) / "logs"))
    check_engine(accelerator)
    if accelerator.distributed_type.value == "FSDP":
        # rollouts and reference passes call the policy outside the wrapped module's forward, where
        # FSDP has not gathered the root's weights; DeepSpeed ZeRO-3 gathers per submodule
        raise LadderError("ppo runs on DDP or DeepSpeed ZeRO-2/3, not FSDP: use accelerate_configs/zero3.yaml "
                          "(or zero2.yaml / multi_gpu.yaml)")
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:
        # no dataloader goes through prepare(): tell DeepSpeed the micro-batch up front
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = \
            cfg.per_device_train_batch_size // cfg.num_mini_batches // cfg.gradient_accumulation_steps
    zero3 = is_zero3(accelerator)
    server = server_sampler(cfg, accelerator) if cfg.rollout_backend == "vllm" and cfg.vllm_mode == "server" else None

    # ---- actors, and held-out scores before training
    set_seed(cfg.seed)  # the critic's fresh head (critic_init: policy) starts the same everywhere
    policy, reference, critic, tokenizer = load_actors(cfg)
    if cfg.gradient_checkpointing:
        enable_checkpointing(policy, critic)
    metrics: dict = {}
    if test_rows and accelerator.is_main_process:
        with zero3_off():  # rank 0 alone generates: not in lock-step with the other ranks
            metrics.update({f"before/{k}": v for k, v in heldout(policy, tokenizer, test_rows, cfg, judges).items()})
    B, world, rank = cfg.per_device_train_batch_size, accelerator.num_processes, accelerator.process_index
    sampler = server or local_sampler(cfg, policy, tokenizer, ds, accelerator)

    # ---- optimizer and schedule (one AdamW, a parameter group per model), prepared as one module
    max_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * len(ds) / (B * world))
    params = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
              {"params": list(critic.parameters()), "lr": cfg.critic_learning_rate or cfg.learning_rate}]
    optimizer = torch.optim.AdamW(params, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
                                  weight_decay=cfg.weight_decay)
    updates = max_steps * cfg.num_ppo_epochs * cfg.num_mini_batches
    # Not prepared: accelerate would step a scheduler once per process; ours steps once per update.
    scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=cfg.warmup(updates),
                              num_training_steps=updates)
    model, optimizer = accelerator.prepare(ActorCritic(policy, critic), optimizer)
    actor = accelerator.unwrap_model(model).policy  # the policy inside whatever engine wraps the module
    if reference is not None:
        # in the policy's precision: DeepSpeed bf16/fp16 casts the policy's weights (mixed precision without it
        # keeps fp32 weights and autocasts, as the reference's passes do)
        reference.to(accelerator.device, dtype=next(actor.parameters()).dtype)
    state = LoopState(cfg)
    accelerator.register_for_checkpointing(scheduler, state)
    if tensorboard:
        accelerator.init_trackers("ppo")

    # ---- the loop: roll out -> advantages -> updates -> logs, held-out curve, resumable state
    # Ranks sample differently; a resumed run gets back the RNG state saved with its step, so it
    # continues exactly as the uninterrupted run would have.
    set_seed(cfg.seed, device_specific=True)
    step = checkpoint.load_latest_state(accelerator, cfg.output_dir) if cfg.resume else 0
    bar = tqdm(total=max_steps, initial=step, desc="ppo", disable=not accelerator.is_main_process)
    start = time.time()
    while step < max_steps:
        rows = prompt_batch(ds, step, rank, B, world, cfg.seed)
        seeds = [cfg.seed + (step * world + rank) * B + i for i in range(B)]  # vLLM's draws, seeded per prompt
        samples = roll_out(sampler, actor, tokenizer, rewarder, rows, seeds, cfg)
        exp = estimate_advantages(model, actor, reference, accelerator, samples, state.kl_coef, cfg)
        stats = update(model, optimizer, scheduler, params, accelerator, exp, cfg,
                       warming_up=step < cfg.critic_warmup_steps)
        step += 1
        bar.update(1)
        log = step_log(accelerator, exp, stats)
        state.update_kl(log["kl"], B * world)
        log.update(kl_coef=state.kl_coef, lr=scheduler.get_last_lr()[0], stopped_early=float(stats.stopped))
        state.history.append({"step": step, **{k: round(v, 5) for k, v in log.items()}})
        if step % cfg.logging_steps == 0 or step == max_steps:
            bar.set_postfix(reward=f"{log['reward']:.3f}", kl=f"{log['kl']:.3f}")
            prompt = samples.prompts[0]
            sample = f"{prompt[-1]['content'] if isinstance(prompt, list) else prompt}\n\n" \
                     f"-> {samples.ro.texts[0]}\n\nscore {samples.scores[0].item():.3f}"
            accelerator.log({**{f"ppo/{k}": v for k, v in log.items()}, "ppo/sample": sample}, step=step)
        if test_rows and cfg.heldout_every and step % cfg.heldout_every == 0 and step < max_steps \
                and accelerator.is_main_process and not zero3:
            points = heldout(actor, tokenizer, test_rows, cfg, judges, sampled=False)
            state.history[-1].update(curve_point(points))
            print(f"ppo: step {step} held-out accuracy {points.get('accuracy', 0):.3f} "
                  f"RM score {points.get('rm_score', 0):.3f}", flush=True)
        if cfg.saves and step % cfg.save_steps == 0 and step < max_steps:
            checkpoint.save_state(accelerator, cfg.output_dir, step, cfg.keep_checkpoints)
    bar.close()
    say_rank("ppo", accelerator, step)  # every rank says it ran (a 2-process launch must show both)

    # ---- save the policy (whole weights, LoRA merged), held-out scores after training, manifest
    history = state.history
    metrics.update({"steps": step, "seconds": round(time.time() - start, 1),
                    "reward_first": history[0]["reward"] if history else None,
                    "reward_last": history[-1]["reward"] if history else None,
                    "kl_last": history[-1]["kl"] if history else None,
                    "reward_model": cfg.reward_model, "world_size": world})
    # under ZeRO-3 every rank gathers the weights (a collective) and rank 0 gets a plain copy
    final = gathered_copy(accelerator, model, policy, "policy.") if zero3 else actor
    if cfg.use_lora and final is not None:
        final = final.merge_and_unload()
    if accelerator.is_main_process:
        if test_rows:
            with zero3_off():
                metrics.update({f"after/{k}": v for k, v in heldout(final, tokenizer, test_rows, cfg, judges).items()})
        checkpoint.export(cfg.output_dir, final, tokenizer, stage="ppo", parent=cfg.model, config=to_dict(cfg),
                          metrics=metrics, history=history)
        print(f"ppo: saved {cfg.output_dir} {checkpoint.summary(metrics)}")
    accelerator.wait_for_everyone()
    # In one process a vLLM engine owns torch's default process group: closing it destroys that group (a
    # dead group left in vLLM's bookkeeping fails the next engine); with several ranks the engine shares
    # the ranks' group, which is kept for the next stage of the launch (ladder.runtime.end_training).
    sampler.close()
    shutil.rmtree(Path(cfg.output_dir) / "rollout-start", ignore_errors=True)
    end_training(accelerator)
    return metrics


def main(argv=None) -> int:
    train(load_config(PPOStageConfig, argv))
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
