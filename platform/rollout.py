"""vLLM rollouts for ladder's RL stages (GRPO and PPO), with exact weight sync on CPU.

The whole API:

    build_engine(path, max_model_len=...)  an in-process vllm.LLM set up the ladder way (see below)
    named_weights(model)                   (name, tensor) in checkpoint names; LoRA merged into copies
    push_weights(llm, weights)             exact sync into an in-process engine, prefix cache reset
    push_weights_to_server(url, weights)   the same into a `ladder vllm-serve` server (CPU: via disk)
    sequence_logprobs(llm, sequences)      log p(token | prefix) under the engine, for checks and PPO
    close_engine(llm)                      free it (and vLLM's process group) so another can start
    exact_vllm(trainer_module)             TRL trainers built inside use LadderVLLMGeneration
    LadderVLLMGeneration                   TRL's vLLM backend with all of the above on CPU
    WorkerExtension                        what a vLLM worker gains (engine arg worker_extension_cls)
    cpu_env(threads)                       environment for a vLLM-CPU server's engine process

Why not stock TRL colocate on CPU (docs/cpu-stack.md, and measured again for this module):
  * TRL builds `LLM(...)` with no dtype: the engine runs in the checkpoint's dtype (bf16 for most hub
    models) while the trainer runs fp32, so sampling log-probs drift from the trainer's by up to ~0.05,
    which GRPO either trains on or "corrects" with an extra importance-sampling forward. On AVX2-only
    CPUs bf16 is also emulated (4.6x slower); with AVX512-BF16 it is fast, but still not the policy.
  * Without enforce_eager, vLLM compiles the model first: 46-110 s of start-up (44 s for an 11M model
    here) instead of 3-10 s.
  * Wherever vLLM-CPU prepacks linear weights for its kernels (fp32 always; bf16 too on CPUs with
    AVX512-BF16/AMX) it deletes `layer.weight`, and TRL's sync (`model.load_weights([(name, param)])`,
    one tensor at a time) crashes at the first step: 'Parameter' object has no attribute
    'weight_loader'. vLLM's own `reload_weights(weights_iterator=...)` reloads a whole checkpoint and
    re-runs the prepacking, which is exact (log-prob gap ~2e-6), but for one thing found here: a
    lm_head tied to the embeddings keeps a packed copy of the OLD embedding (vLLM skips `lm_head.*`
    when weights are tied; gap 0.38 after one noisy update), so it is re-packed after every reload.
  * vLLM-CPU spawns its engine process unless VLLM_ENABLE_V1_MULTIPROCESSING=0, which needs an
    `if __name__ == "__main__"` guard (pytest has none) and a second copy of the weights; in-process
    starts faster and lets the sync hand tensors over without copying them through a pipe.
  * vLLM's CPU worker replaces `torch.set_num_threads` with a no-op for the whole process: threads
    are set before the engine is built, and the real function is put back afterwards.
On CUDA none of this applies and TRL's own colocate / server (NCCL) paths are used unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterable, Iterator

from ladder.runtime import has_cuda, setup_threads

log = logging.getLogger("ladder.rollout")

GiB = 1 << 30


def cpu_env(threads: int | None = None) -> dict[str, str]:
    """Environment for a multiprocess vLLM-CPU engine (a server): use `threads` cores (default: this
    process's share) and reserve none of them. By default vLLM-CPU pins its worker to core 0 and
    reserves core 1 for its scheduler: on a 2-core box that halves generation speed. (An in-process
    engine ignores these and runs on the process's own torch threads: see build_engine.)"""

    threads = threads or setup_threads()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {"OMP_NUM_THREADS": str(threads),
            "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores[:threads])),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def kv_cache_bytes(config, max_model_len: int, max_num_seqs: int) -> int:
    """Room for `max_num_seqs` full-length fp32 sequences, capped at 2 GiB but never below one.

    An explicit size skips vLLM-CPU's memory profiling (a warm-up forward) and keeps the engine from
    claiming a fraction of the whole NUMA node (8-15 GiB here) next to the trainer."""
    heads = getattr(config, "num_attention_heads", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * 4  # K and V, fp32
    one = per_token * max_model_len
    return int(max(one * 1.25, min(one * max_num_seqs * 1.25, 2 * GiB)) + 16 * (1 << 20))


def build_engine(model: str, *, max_model_len: int, max_num_seqs: int = 64, seed: int = 0, bf16: bool = False,
                 max_num_batched_tokens: int | None = None, gpu_memory_utilization: float = 0.3, **engine_kwargs):
    """An in-process vllm.LLM for `model` (an HF checkpoint dir), ready for `push_weights`.

    In process everywhere: `push_weights` hands the worker a generator of the trainer's own tensors through
    collective_rpc, which only a worker in this process can take (a separate engine process would have to
    pickle them, and a generator cannot be). CPU: the trainer's precision (fp32; bf16 when the trainer runs
    bf16 autocast, `bf16=True`: then the sync is no longer exact and GRPO corrects for it), eager, explicit KV cache,
    tied heads repacked on every reload. CUDA: vLLM's dtype and compilation, and `gpu_memory_utilization`
    of the GPU at most (vLLM's default, 0.9, leaves the trainer next to it nothing). Under torch.distributed
    with several ranks each rank builds its own engine through vLLM's external launcher, as TRL does.
    """
    import torch

    cuda = has_cuda()
    kwargs = dict(model=str(model), max_model_len=max_model_len, max_num_seqs=max_num_seqs, seed=seed,
                  worker_extension_cls="ladder.rollout.WorkerExtension",
                  # temperature scaling shows in the returned log-probs (TRL's importance sampling needs it)
                  logprobs_mode="processed_logprobs",
                  max_num_batched_tokens=max_num_batched_tokens or max(4096, max_model_len))
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        kwargs["distributed_executor_backend"] = "external_launcher"  # joins the ranks' process group
        os.environ.setdefault("RANK", str(torch.distributed.get_rank()))
        os.environ.setdefault("LOCAL_RANK", "0")
    if not cuda:
        from transformers import AutoConfig

    
        # In process, vLLM computes on this process's torch threads (its core-binding variables are
        # read only by the multiprocess executor): they must be right before the engine freezes them.
        setup_threads()
        kwargs.update(dtype="bfloat16" if bf16 else "float32", enforce_eager=True,
                      kv_cache_memory_bytes=kv_cache_bytes(AutoConfig.from_pretrained(model), max_model_len,
                                                           max_num_seqs))
    else:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    # in process (the external launcher turns vLLM's engine process off itself; "uni" needs this)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    kwargs.setdefault("distributed_executor_backend", "uni")
    kwargs.update(engine_kwargs)
    from vllm import LLM

    set_threads = torch.set_num_threads
    try:
        return LLM(**kwargs)
    finally:
        torch.set_num_threads = set_threads  # the CPU worker turned it into a no-op for the process


def close_engine(llm) -> None:
    """Shut an in-process engine down and drop vLLM's process group, so that another can start."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        with contextlib.suppress(Exception):
            core.shutdown()
    del llm
    from vllm.distributed import parallel_state

    with contextlib.suppress(Exception):
        parallel_state.cleanup_dist_env_and_memory()
    # If torch's group was already destroyed by someone else (accelerate's end_training does that), the
    # cleanup above raises before forgetting vLLM's world group, and the next engine would reuse the
    # dead group ("not initialized in the world group map"): forget it in any case.
    parallel_state._WORLD = None
    gc.collect()


# ---------------------------------------------------------------- weights

def named_weights(model) -> Iterator[tuple[str, "torch.Tensor"]]:  # noqa: F821
    """The model's weights under checkpoint names, one tensor at a time, as vLLM loads them.

    A peft model yields base weights with its active LoRA adapters merged into a COPY
    (W + B A * scale, computed per layer): TRL's own sync merges in place and unmerges afterwards,
    and (W + d) - d is not W in floating point: the trainer's weights would drift a little per sync. Adapter tensors are
    skipped (vLLM's model has no such parameters), and a 4-bit (QLoRA) base is dequantised
    first since vLLM cannot load bitsandbytes tensors that way."""
    try:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover
        PeftModel = LoraLayer = ()
    if not isinstance(model, PeftModel):
        for name, param in model.named_parameters():
            yield name, param.detach()
        return
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        if ".lora_" in name or "original_module" in name:
            continue
        tensor = param.detach()
        owner = modules.get(name.rsplit(".", 2)[0]) if ".base_layer." in name else None
        if isinstance(owner, LoraLayer) and name.endswith(".base_layer.weight") and not owner.merged:
            if hasattr(tensor, "quant_state"):
                from peft.utils.integrations import dequantize_module_weight

                tensor = dequantize_module_weight(owner.get_base_layer())
            tensor = tensor.clone()
            for adapter in owner.active_adapters:
                if adapter in owner.lora_A:
                    tensor += owner.get_delta_weight(adapter).to(tensor.dtype)
        clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
        yield clean.replace(".modules_to_save.default", ""), tensor


def _repack_tied_heads(model) -> int:
    """vLLM-CPU keeps a packed copy of each lm_head's weight for its matmul kernel. A reload
    re-packs every layer it loaded, but a head tied to the embeddings is never loaded by name
    (vLLM skips `lm_head.*` for tied models): re-pack it from the (updated, shared) weight."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    n = 0
    for module in model.modules():
        if isinstance(module, ParallelLMHead) and hasattr(module, "cpu_linear"):
            module.quant_method.process_weights_after_loading(module)
            n += 1
    return n


class WorkerExtension:
    """Methods every vLLM worker gains (engine arg `worker_extension_cls="ladder.rollout.WorkerExtension"`),
    callable by name through `collective_rpc`, in process or over a server's /collective_rpc."""

    def ladder_reload_weights(self, weights_iterator=None, weights_path: str | None = None) -> int:
        """Reload weights in place (vLLM re-packs them for its kernels), then fix tied heads."""
        self.reload_weights(weights_iterator=weights_iterator, weights_path=weights_path)
        return _repack_tied_heads(self.model_runner.get_model())


def push_weights(llm, weights: Iterable) -> None:
    """Exact weight sync into an in-process engine built by `build_engine`; then the prefix cache is
    reset, since cached KV blocks were computed by the old weights."""
    llm.collective_rpc("ladder_reload_weights", kwargs={"weights_iterator": iter(weights)})
    llm.reset_prefix_cache()


def save_weights(weights: Iterable, directory) -> str:
    """Weights as one safetensors file, for a server on the same machine to reload from disk."""
    from pathlib import Path

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.safetensors.tmp"
    save_file({name: t.contiguous() for name, t in weights}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / "model.safetensors")
    return str(directory)


def push_weights_to_server(base_url: str, weights: Iterable, directory, session=None) -> None:
    """CPU server sync: TRL's server path streams weights over NCCL, which needs CUDA. Instead the
    weights go through a safetensors file that the server's workers reload (same machine only)."""
    import requests

    path = save_weights(weights, directory)
    http = session or requests
    r = http.post(f"{base_url}/collective_rpc", json={"method": "ladder_reload_weights",
                                                      "kwargs": {"weights_path": path}}, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"vLLM server at {base_url}: weight reload failed ({r.status_code}: {r.text[:300]}); "
                           "was it started with `ladder vllm-serve`?")
    r = http.post(f"{base_url}/reset_prefix_cache", timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"vLLM server at {base_url}: prefix cache reset failed ({r.status_code})")


def sequence_logprobs(llm, sequences: list[list[int]]) -> list[list[float]]:
    """log p(token_t | tokens_<t) for t >= 1 of each token sequence, computed by the engine (prompt
    log-probs, temperature 1): what the trainer's forward should give after an exact sync."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
    outs = llm.generate([{"prompt_token_ids": list(s)} for s in sequences], params, use_tqdm=False)
    return [[step[tok].logprob for step, tok in zip(o.prompt_logprobs[1:], s[1:])] for o, s in zip(outs, sequences)]


# ---------------------------------------------------------------- TRL adapter

_CLASS = None


def __getattr__(name):
    # `LadderVLLMGeneration` subclasses TRL's VLLMGeneration, whose module imports vLLM (20+ s here):
    # the class is made on first use, so `import ladder.rollout` stays cheap and works without vLLM.
    if name == "LadderVLLMGeneration":
        return _generation_class()
    raise AttributeError(f"module 'ladder.rollout' has no attribute '{name}'")


def _generation_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from trl.generation.vllm_generation import VLLMGeneration

    class LadderVLLMGeneration(VLLMGeneration):
        """TRL's VLLMGeneration (same constructor). On CPU: an fp32 eager in-process engine with exact
        sync (colocate), or a `ladder vllm-serve` server synced through disk (server). CUDA: TRL's."""

        def _init_vllm(self):
            if has_cuda():
                return super()._init_vllm()
            if self.mode == "colocate":
                if self.tensor_parallel_size != 1:
                    raise ValueError("vLLM on CPU: tensor parallelism is not supported (vllm_tensor_parallel_size=1)")
                self.llm = build_engine(self.model.name_or_path,
                                        max_model_len=self.max_model_length or _max_len(self.model),
                                        max_num_seqs=self.max_num_seqs or 64, seed=self.accelerator.process_index,
                                        bf16=self.accelerator.mixed_precision == "bf16",
                                        model_impl=self.model_impl, trust_remote_code=self.trust_remote_code)
                self.enable_sleep_mode = self._llm_weights_sleeping = False  # vLLM-CPU ignores sleep mode
            elif self.mode == "server":
                if self.accelerator.is_main_process:
                    import tempfile

                    from trl.generation.vllm_client import VLLMClient

                    base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
                    # No init_communicator (TRL's NCCL weight channel): generation goes through the
                    # server's OpenAI API as usual, weights through push_weights_to_server.
                    self.vllm_client = VLLMClient(base_url=base_url, connection_timeout=self.server_timeout)
                    self._sync_dir = tempfile.mkdtemp(prefix="ladder-vllm-sync-")
            else:
                raise ValueError(f"vllm_mode must be 'server' or 'colocate', got '{self.mode}'")
            self.accelerator.wait_for_everyone()

        def _iter_named_params(self):
            from accelerate.utils import is_peft_model

            if not is_peft_model(self.model):
                yield from super()._iter_named_params()
                return
            with self._dist.gather_params(list(self.model.parameters())):
                yield from named_weights(self.model)  # merged into copies, not in place

        def sync_weights(self):
            if has_cuda():
                return super().sync_weights()
            if self.mode == "colocate":
                push_weights(self.llm, self._iter_named_params())
            elif self.accelerator.is_main_process:
                push_weights_to_server(self.vllm_client.base_url, self._iter_named_params(), self._sync_dir,
                                       session=self.vllm_client.session)
            else:
                for _ in self._iter_named_params():  # take part in any gather collectives
                    pass

    _CLASS = LadderVLLMGeneration
    return _CLASS


def _max_len(model) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(getattr(config, "max_position_embeddings", 2048))


@contextlib.contextmanager
def exact_vllm(trainer_module):
    """While inside, a TRL trainer module (e.g. trl.trainer.grpo_trainer) builds LadderVLLMGeneration
    where it would build VLLMGeneration: wrap the trainer's __init__ in it. TRL is not forked or edited;
    only the name the module looks up is swapped, and put back on exit."""
    original = trainer_module.VLLMGeneration
    trainer_module.VLLMGeneration = _generation_class()
    try:
        yield
    finally:
        trainer_module.VLLMGeneration = original
