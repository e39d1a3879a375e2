"""`ladder pretrain`: train a base model from scratch with a plain accelerate loop.

Reads top to bottom like the recipe: tokenizer -> packed token blocks -> model -> AdamW with
warmup + cosine -> loop (grad accumulation, clipping, eval, checkpoints) -> HF directory + manifest.

    accelerate launch -m ladder.pretrain --config recipes/tiny/pretrain.yaml
    ladder pretrain --config recipes/tiny/pretrain.yaml --max_steps 50 --resume
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option, to_dict
from ladder.errors import LadderError
from ladder import checkpoint
from ladder.precision import choose
from ladder.runtime import check_engine, end_training, process_group_kwargs, say_rank, setup_process


@dataclass
class PretrainConfig:
    data: str = option("runs/tiny/data", "corpus: built-in data dir, a .jsonl/.parquet with `text`, or hub id")
    tokenizer: str = option("runs/tiny/tokenizer", "a tokenizer dir or hub id")
    output_dir: str = option(
        "runs/tiny/base", "where the base model and ladder.json are written (checkpoints/ for resuming)")
    model: str = option("mini", "a preset (tiny, mini, small, gpt2-124m) or a hub id/dir whose config to train")
    seq_len: int = option(128, "tokens per training sequence (the corpus is packed into blocks of this length)")
    batch_size: int = option(32, "sequences per device per micro-step")
    gradient_accumulation_steps: int = option(1, "micro-steps per optimizer step")
    max_steps: int = option(600, "optimizer steps")
    learning_rate: float = option(3e-3, "peak learning rate (AdamW)")
    min_lr_ratio: float = option(0.1, "cosine decays to learning_rate * min_lr_ratio")
    warmup_steps: int = option(50, "steps of linear warm-up before the cosine decay")
    weight_decay: float = option(0.1, "AdamW weight decay")
    adam_beta2: float = option(0.95, "AdamW beta2")
    max_grad_norm: float = option(1.0, "gradient clipping; 0: none")
    mixed_precision: str = option("auto", "auto: bf16 where the hardware has it, else fp32 (ladder.precision); no, bf16, fp16")
    eval_every: int = option(100, "held-out loss every this many steps")
    eval_batches: int = option(8, "batches of held-out blocks per evaluation")
    save_every: int = option(200, "resumable state every this many steps")
    keep_checkpoints: int = option(2, "resumable states kept")
    logging_steps: int = option(10, "loss and learning rate to the log every this many steps")
    report_to: str = option("tensorboard", "or none")
    max_texts: int | None = option(None, "use only the first N corpus documents")
    seed: int = option(0, "weights' initialisation and data order")
    resume: bool = option(False, "continue from the newest saved state in output_dir/checkpoints")

    def __post_init__(self):
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise LadderError(f"mixed_precision must be auto, no, bf16 or fp16, got '{self.mixed_precision}'")
        if self.report_to not in ("tensorboard", "none"):
            raise LadderError(f"report_to must be tensorboard or none, got '{self.report_to}'")
        if self.max_steps < 1 or self.batch_size < 1 or self.seq_len < 8:
            raise LadderError("max_steps and batch_size must be >= 1 and seq_len >= 8")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise LadderError(f"{name} must be >= 1 (a number above max_steps turns it off), "
                                  f"got {getattr(self, name)}")


# ---------------------------------------------------------------- data

def pack(tokenizer, texts, seq_len: int):
    """Every text + EOS, concatenated and cut into fixed-length blocks (the tail is dropped)."""
    import torch

    ids = []
    for enc in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise LadderError(f"corpus too small: {len(ids)} tokens is less than one block of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def epoch_loader(blocks, batch_size: int, seed: int, epoch: int, drop_last: bool = True):
    """The same block order for a given (seed, epoch) on every run: resume lands on the same data."""
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = blocks[torch.randperm(len(blocks), generator=g)]
    return DataLoader(order, batch_size=batch_size, shuffle=False, drop_last=drop_last)


def lr_lambda(cfg: PretrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# ---------------------------------------------------------------- loop

@dataclass
class Metrics:
    eval_loss: float | None = None
    train_loss: float | None = None
    tokens: int = 0
    seconds: float = 0.0


def full_shape(p):
    """A parameter's shape. Under DeepSpeed ZeRO-3 the local tensor is an empty shard (1-D): the
    real shape is `ds_shape` (else weight decay would miss every matrix, and the count be 0)."""
    return tuple(getattr(p, "ds_shape", p.shape))


def evaluate(model, blocks, cfg, accelerator) -> float:
    import torch

    model.eval()
    losses = []
    with torch.no_grad():
        # drop_last=False: a held-out set smaller than one batch is still evaluated
        for i, batch in enumerate(epoch_loader(blocks, cfg.batch_size, cfg.seed, 0, drop_last=False)):
            if i >= cfg.eval_batches:
                break
            batch = batch.to(accelerator.device)
            losses.append(model(input_ids=batch, labels=batch).loss.float())
    model.train()
    loss = torch.stack(losses).mean() if losses else torch.tensor(float("nan"))
    return accelerator.reduce(loss.to(accelerator.device), reduction="mean").item()


def load_tokenizer(name: str):
    """The tokenizer to train with: a folder (`ladder tokenizer`'s) or a hub id. A path that is not there is
    "no such folder" (the hub client would call it a bad repo id); any other failure names the reason."""
    from transformers import AutoTokenizer

    from ladder.data.loaders import looks_local
    from ladder.models import first_line, unreachable

    if looks_local(name) and not Path(name).expanduser().exists():
        raise LadderError(f"tokenizer '{name}': no such folder (run `ladder tokenizer` first, or pass a hub id)")
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        why = unreachable(name, e)
        if why:
            raise LadderError(f"tokenizer '{name}' {why}") from None
        raise LadderError(f"tokenizer '{name}': cannot load ({first_line(e)}); "
                          "run `ladder tokenizer` first or pass a hub id") from None


def train(cfg: PretrainConfig) -> Metrics:
    setup_process()
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from ladder.data.loaders import load_split
    from ladder.pretrain.model import build_model, model_config, n_params

    # Check everything cheap before anything expensive: the tokenizer and the model's config (a bad
    # --model fails here, not after the corpus is read and packed).
    tokenizer = load_tokenizer(cfg.tokenizer)
    config = model_config(cfg.model, tokenizer, max_position_embeddings=max(512, cfg.seq_len))
    train_texts = load_split(cfg.data, "corpus", "train", limit=cfg.max_texts)["text"]
    try:
        eval_texts = load_split(cfg.data, "corpus", "test")["text"]
    except LadderError:  # a single file or hub corpus without a test split: hold out 2%
        cut = max(1, len(train_texts) // 50)
        train_texts, eval_texts = train_texts[cut:], train_texts[:cut]

    if cfg.mixed_precision == "auto":  # resolved here, so the manifest records what ran
        cfg.mixed_precision = "bf16" if choose(None)[0] else "no"
    precision = cfg.mixed_precision
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=precision,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_dir=str(Path(cfg.output_dir) / "logs"),
        kwargs_handlers=process_group_kwargs(),
    )
    check_engine(accelerator)
    if accelerator.state.deepspeed_plugin is not None:
        # our loaders are built per epoch, after prepare(): tell DeepSpeed the batch size up front
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
        ds["train_batch_size"] = cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    set_seed(cfg.seed)
    blocks = pack(tokenizer, train_texts, cfg.seq_len)
    eval_blocks = pack(tokenizer, eval_texts, cfg.seq_len)
    model = build_model(cfg.model, tokenizer, seed=cfg.seed, config=config)
    decay = [p for n, p in model.named_parameters() if len(full_shape(p)) >= 2]
    no_decay = [p for n, p in model.named_parameters() if len(full_shape(p)) < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2), fused=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    step = checkpoint.load_latest_state(accelerator, cfg.output_dir) if cfg.resume else 0

    if accelerator.is_main_process:
        accelerator.print(f"pretrain: {n_params(accelerator.unwrap_model(model)) / 1e6:.2f}M params, "
                          f"{len(blocks)} blocks x {cfg.seq_len} tokens, {accelerator.num_processes} process(es) "
                          f"({accelerator.distributed_type.value}), precision {precision}")
    if cfg.report_to != "none":
        accelerator.init_trackers("pretrain", config={k: v for k, v in to_dict(cfg).items()
                                                      if isinstance(v, (int, float, str, bool))})

    # Data position is a pure function of the step: micro-batches consumed = step * accumulation.
    per_epoch = len(blocks) // (cfg.batch_size * accelerator.num_processes)
    if per_epoch == 0:
        raise LadderError(f"corpus has {len(blocks)} blocks, fewer than one batch of "
                          f"{cfg.batch_size * accelerator.num_processes}")
    consumed = step * cfg.gradient_accumulation_steps
    epoch, skip = divmod(consumed, per_epoch)

    metrics = Metrics()
    tokens_per_step = cfg.seq_len * cfg.batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    bar = tqdm(total=cfg.max_steps, initial=step, desc="pretrain", disable=not accelerator.is_main_process,
               dynamic_ncols=True)
    model.train()
    start, window_loss, window_n = time.time(), 0.0, 0
    t_window = time.time()
    while step < cfg.max_steps:
        # prepare() shards the batches between processes: each rank sees its own batch_size blocks
        loader = accelerator.prepare(epoch_loader(blocks, cfg.batch_size, cfg.seed, epoch))
        if skip:
            loader = accelerator.skip_first_batches(loader, skip)
            skip = 0
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            window_loss += loss.detach().float().item()
            window_n += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                dt = time.time() - t_window
                metrics.train_loss = window_loss / window_n
                tok_s = tokens_per_step * cfg.logging_steps / dt if step % cfg.logging_steps == 0 else 0
                bar.set_postfix(loss=f"{metrics.train_loss:.3f}", tok_s=f"{tok_s:,.0f}",
                                lr=f"{scheduler.get_last_lr()[0]:.1e}")
                accelerator.log({"train/loss": metrics.train_loss, "train/lr": scheduler.get_last_lr()[0],
                                 "train/tokens_per_s": tok_s}, step=step)
                window_loss, window_n, t_window = 0.0, 0, time.time()
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                metrics.eval_loss = evaluate(model, eval_blocks, cfg, accelerator)
                accelerator.log({"eval/loss": metrics.eval_loss}, step=step)
                bar.write(f"step {step}: eval loss {metrics.eval_loss:.4f}")
            if step % cfg.save_every == 0 and step < cfg.max_steps:
                checkpoint.save_state(accelerator, cfg.output_dir, step, cfg.keep_checkpoints)
            if step >= cfg.max_steps:
                break
        epoch += 1
    bar.close()
    metrics.seconds = time.time() - start
    metrics.tokens = tokens_per_step * step
    say_rank("pretrain", accelerator, step)
    save_base(accelerator, model, tokenizer, cfg, metrics, step)
    end_training(accelerator)
    return metrics


def save_base(accelerator, model, tokenizer, cfg: PretrainConfig, metrics: Metrics, step: int) -> None:
    """The final HF directory: model + tokenizer (with chat template) + ladder.json, written last."""
    from ladder.pretrain.model import n_params

    state = accelerator.get_state_dict(model)  # gathers shards under DeepSpeed/FSDP: all ranks call it
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        checkpoint.export(cfg.output_dir, unwrapped, tokenizer, state_dict=state, stage="pretrain",
                          parent=cfg.tokenizer, config=to_dict(cfg), metrics={
                              "eval_loss": metrics.eval_loss, "train_loss": metrics.train_loss, "steps": step,
                              "tokens": metrics.tokens, "seconds": round(metrics.seconds, 1),
                              "tokens_per_s": round(metrics.tokens / max(metrics.seconds, 1e-9)),
                              "params": n_params(unwrapped),
                              "world_size": accelerator.num_processes,
                          })
        print(f"saved {cfg.output_dir} (eval loss {metrics.eval_loss:.4f})")
    accelerator.wait_for_everyone()


def main(argv=None) -> int:
    cfg = load_config(PretrainConfig, argv)
    train(cfg)
    return 0


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
