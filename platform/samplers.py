"""Where PPO's samples come from: one small interface, three samplers.

    sampler = HFSampler(temperature, max_tokens, autocast)          # transformers generate, in the trainer
    sampler = VLLMSampler(path, temperature, max_tokens, ...)       # an in-process vLLM engine (ladder.rollout)
    sampler = ServerSampler(url, temperature, max_tokens, ...)      # a `ladder vllm-serve` server
    ro = sampler(model, tokenizer, prompts, seeds)                  # -> Rollout: one response per prompt
    sampler.close()

Every sampler draws from softmax(logits / temperature) alone (no top-k/top-p/min-p, no repetition
penalty, whatever the checkpoint's generation_config says), so the distribution sampled from is the
one the trainer's log-probs are computed from; every sampler ends a response at any of the model's EOS
ids. The vLLM samplers first push the model's current weights into their engine (exactly, LoRA merged
into copies) and also return the log-prob each token was sampled with, so the loop can log the gap to
its own (~1e-6 when the sync is exact). `seeds` (one per prompt) make vLLM's draws reproducible, so a
resumed run samples what the uninterrupted one did; HF generate draws from torch's RNG, which the
trainer's checkpoint restores.
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ladder.errors import LadderError


@dataclass
class Rollout:
    seq: torch.Tensor  # [B, P + R] left-padded prompt, then the response
    attention: torch.Tensor  # [B, P + R]
    mask: torch.Tensor  # [B, R] float: response tokens up to and including the first EOS
    has_eos: torch.Tensor  # [B] bool
    texts: list[str]  # the responses, decoded without special tokens
    n_prompt: int
    sampler_logprobs: torch.Tensor | None = None  # [B, R] what the sampler (vLLM) gave its tokens


def encode_prompts(tokenizer, prompts, device):
    from ladder.generation import build_prompt

    return tokenizer([build_prompt(tokenizer, p) for p in prompts], return_tensors="pt", padding=True,
                     padding_side="left", add_special_tokens=False).to(device)


def make_rollout(tokenizer, enc, response: torch.Tensor, eos: list[int], sampler_logprobs=None) -> Rollout:
    """Prompt batch + sampled response ids (anything after a response's first EOS, any of `eos`, ignored)
    -> Rollout."""
    is_eos = torch.isin(response, torch.tensor(eos, device=response.device))
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    mask = (~after_eos).float()
    texts = tokenizer.batch_decode(response.masked_fill(after_eos, tokenizer.pad_token_id), skip_special_tokens=True)
    seq = torch.cat([enc["input_ids"], response], 1)
    attention = torch.cat([enc["attention_mask"], mask.long()], 1)
    if sampler_logprobs is not None:
        sampler_logprobs = sampler_logprobs * mask
    return Rollout(seq, attention, mask, is_eos.any(1), texts, enc["input_ids"].shape[1], sampler_logprobs)


def prompt_ids(enc) -> list[list[int]]:
    """The prompts' token ids without their left padding, as a vLLM engine takes them."""
    return [row[m.bool()].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"])]


def sampled_rollout(tokenizer, enc, tokens: list[list[int]], logprobs: list[list[float]], eos: list[int]) -> Rollout:
    """Responses (token ids, and the log-prob each was sampled with) from a vLLM engine -> Rollout."""
    device = enc["input_ids"].device
    width = max(1, max(len(t) for t in tokens))
    response = torch.full((len(tokens), width), tokenizer.pad_token_id, dtype=torch.long)
    sampled = torch.zeros(len(tokens), width)
    for i, (t, lp) in enumerate(zip(tokens, logprobs)):
        response[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        sampled[i, :len(t)] = torch.tensor(lp, dtype=torch.float)
    return make_rollout(tokenizer, enc, response.to(device), eos, sampled.to(device))


class HFSampler:
    """transformers generate on the trained model itself. Under ZeRO-3 it runs in lock-step on all
    ranks (each gathers the shards it needs), so every rank must call it."""

    def __init__(self, temperature: float, max_tokens: int, autocast=nullcontext):
        self.temperature, self.max_tokens, self.autocast = temperature, max_tokens, autocast

    def __call__(self, model, tokenizer, prompts, seeds=None) -> Rollout:
        from ladder.generation import eos_ids, generate_ids, generation_config

        enc = encode_prompts(tokenizer, prompts, next(model.parameters()).device)
        eos = eos_ids(tokenizer, model)
        config = generation_config(tokenizer, eos, max_new_tokens=self.max_tokens, temperature=self.temperature)
        with self.autocast():  # the precision the prepared model's forward runs in (bf16/fp16)
            seq = generate_ids(model, enc, config)
        return make_rollout(tokenizer, enc, seq[:, enc["input_ids"].shape[1]:], eos)

    def close(self) -> None:
        pass


class VLLMSampler:
    """An in-process vLLM engine (ladder.rollout.build_engine), built once from the starting checkpoint;
    the model's weights are pushed into it before each call."""

    def __init__(self, path: str, temperature: float, max_tokens: int, *, max_model_len: int, max_num_seqs: int,
                 seed: int, gpu_memory_utilization: float, bf16: bool = False):
        from ladder.rollout import build_engine

        self.temperature, self.max_tokens = temperature, max_tokens
        self.llm = build_engine(path, max_model_len=max_model_len, max_num_seqs=max_num_seqs, seed=seed, bf16=bf16,
                                gpu_memory_utilization=gpu_memory_utilization)

    def __call__(self, model, tokenizer, prompts, seeds: list[int]) -> Rollout:
        from vllm import SamplingParams

        from ladder.distributed import whole_weights
        from ladder.generation import eos_ids
        from ladder.rollout import named_weights, push_weights

        with whole_weights(model):  # the sync reads every weight in full
            push_weights(self.llm, named_weights(model))
        enc = encode_prompts(tokenizer, prompts, next(model.parameters()).device)
        ids = prompt_ids(enc)
        eos = eos_ids(tokenizer, model)
        # explicit SamplingParams: vLLM applies none of the checkpoint's generation_config to them
        params = [SamplingParams(temperature=self.temperature, top_k=-1, top_p=1.0, max_tokens=self.max_tokens,
                                 stop_token_ids=eos, seed=s, logprobs=0) for s in seeds]
        outs = [o.outputs[0] for o in self.llm.generate([{"prompt_token_ids": i} for i in ids], params,
                                                        use_tqdm=False)]
        return sampled_rollout(tokenizer, enc, [o.token_ids for o in outs],
                               [[lp[t].logprob for t, lp in zip(o.token_ids, o.logprobs)] for o in outs], eos)

    def close(self) -> None:
        from ladder.rollout import close_engine

        close_engine(self.llm)


class ServerSampler:
    """A `ladder vllm-serve` server on other devices or another node. Before each call the main process
    pushes the model's weights (CUDA: TRL's NCCL weight channel; CPU: a safetensors file the server
    reloads, same machine only), then every rank sends its own prompts. Built before any model loads,
    so a server that is not there fails the run at once."""

    def __init__(self, url: str, temperature: float, max_tokens: int, *, timeout: float, accelerator):
        import tempfile

        from trl.generation.vllm_client import VLLMClient

        self.temperature, self.max_tokens = temperature, max_tokens
        self.accelerator, self.nccl = accelerator, torch.cuda.is_available()
        try:
            self.client = VLLMClient(base_url=url, connection_timeout=timeout)
        except OSError:  # refused or timed out (requests' and the builtin ConnectionError are both OSErrors)
            raise LadderError(f"vllm_mode server: no vLLM server answers at {url} after {timeout:g} s "
                              "(start one with `ladder vllm-serve --model <policy>`)") from None
        if accelerator.is_main_process:
            if self.nccl:
                self.client.init_communicator(device=accelerator.device)
            else:
                self.sync_dir = tempfile.mkdtemp(prefix="ladder-ppo-sync-")
        accelerator.wait_for_everyone()

    def __call__(self, model, tokenizer, prompts, seeds: list[int]) -> Rollout:
        from concurrent.futures import ThreadPoolExecutor

        from ladder.distributed import whole_weights
        from ladder.generation import eos_ids
        from ladder.rollout import named_weights, push_weights_to_server

        with whole_weights(model):  # the sync reads every weight in full (a collective under ZeRO-3)
            if self.accelerator.is_main_process:
                if self.nccl:
                    weights = list(named_weights(model))
                    meta = [(n, str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in weights]
                    self.client.update_named_params(meta, iter(weights))
                    self.client.reset_prefix_cache()
                else:
                    push_weights_to_server(self.client.base_url, named_weights(model), self.sync_dir,
                                           session=self.client.session)
        self.accelerator.wait_for_everyone()  # no rank samples from the old weights
        enc = encode_prompts(tokenizer, prompts, next(model.parameters()).device)
        eos = eos_ids(tokenizer, model)

        def one(ids_seed):
            # Seeded per prompt. A request carries one seed for all its prompts, and one seed means the same
            # random draws for every prompt (correlated samples, identical ones for equal prompts): one
            # request per prompt, in flight together so the server still batches them. Every sampling knob
            # is sent, so the server applies none of the checkpoint's generation_config.
            ids, seed = ids_seed
            out = self.client.generate([ids], temperature=self.temperature, top_p=1.0, top_k=0, min_p=0.0,
                                       repetition_penalty=1.0, max_tokens=self.max_tokens, logprobs=0,
                                       generation_kwargs={"seed": seed, "stop_token_ids": eos})
            return out["completion_ids"][0], [lp[0] for lp in out["logprobs"][0]]

        with ThreadPoolExecutor(max_workers=min(64, len(prompts))) as pool:  # 64: the client's connection pool
            tokens, logprobs = zip(*pool.map(one, zip(prompt_ids(enc), seeds)))
        return sampled_rollout(tokenizer, enc, list(tokens), list(logprobs), eos)

    def close(self) -> None:
        if self.accelerator.is_main_process and not self.nccl:
            shutil.rmtree(self.sync_dir, ignore_errors=True)
