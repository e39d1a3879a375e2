"""Shared fixtures: one tiny run (data -> tokenizer -> pretrained base) built once per test session.

Everything is generated here, so the suite needs no network and no model hub.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# fp32 on every machine kind: the learning margins were measured in it, and an AVX2-only CPU would emulate
# bf16 (6-8x slower); the AMX and AVX512-BF16 kinds would otherwise train in bf16 (ladder.precision).
# test_precision.py runs bf16. fp32 still rounds differently per kind (AVX2 / AVX512 kernels): a learning test's
# margin must hold for other seeds too, so check it with AVX2 kernels on an AVX512 machine as well:
#   ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 pytest tests/test_grpo.py
os.environ.setdefault("LADDER_PRECISION", "fp32")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Small but real: enough data for the tiny model to learn the worked format in seconds.
TINY_DATA = ["--corpus_docs", "3000", "--sft_train", "800", "--prefs_train", "600", "--rl_train", "300",
             "--test_size", "64", "--countdown_fraction", "0.1"]


@pytest.fixture
def lm_head_calls(monkeypatch) -> list:
    """Every call of TRL's fused LM head during a test, as (rows of hidden states it projects onto the
    vocabulary, whether TRL's forward took its compact path: the labelled positions alone)."""
    import trl.trainer.utils as trl_utils

    head, calls = trl_utils._ChunkedLogProbFunction, []

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            calls.append((hidden.shape[0], trl_utils._use_triton(hidden.device)))  # what TRL reads to go compact
            return head.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    return calls


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """runs/<name>/ with data/, tokenizer/ and base/ (a pretrained 'tiny' Llama)."""
    from ladder.data import build
    from ladder.pretrain import tokenizer, train

    root = tmp_path_factory.mktemp("tiny_run")
    assert build.main(["--output_dir", str(root / "data"), *TINY_DATA]) == 0
    assert tokenizer.main(["--data", str(root / "data"), "--output_dir", str(root / "tokenizer"),
                           "--vocab_size", "400"]) == 0
    assert train.main(["--data", str(root / "data"), "--tokenizer", str(root / "tokenizer"),
                       "--output_dir", str(root / "base"), "--model", "tiny", "--max_steps", "150",
                       "--batch_size", "16", "--warmup_steps", "15", "--eval_every", "150",
                       "--save_every", "1000", "--report_to", "none"]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_data(tiny_run) -> Path:
    return tiny_run / "data"


@pytest.fixture(scope="session")
def tiny_base(tiny_run) -> Path:
    return tiny_run / "base"


@pytest.fixture(scope="session")
def tiny_sft(tiny_run) -> Path:
    """tiny_base after SFT on tiny_data's chats: a plain HF checkpoint dir (merged weights, tokenizer
    with chat template, ladder.json). Greedy, it answers in the <think>..</think><answer>..</answer>
    format (held-out format rate 1.0) but is not yet right; sampled (temperature 1), it keeps the
    format ~2/3 of the time and is right on ~1-3% of problems: room for PPO/GRPO to climb on both.
    Training longer (8 epochs at 4e-3: greedy accuracy ~9%) saturates the format, which leaves the
    RL tests' format rewards nothing to improve, so this stays deliberately short."""
    from ladder import sft

    out = tiny_run / "sft"
    assert sft.main(["--model", str(tiny_run / "base"), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                     "--num_train_epochs", "3", "--learning_rate", "2e-3", "--eval_samples", "64",
                     "--report_to", "none", "--save_strategy", "no"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_rm(tiny_run, tiny_sft) -> Path:
    """A reward model (one-logit sequence classifier) trained from tiny_sft on tiny_data's preference
    pairs; its ladder.json holds the held-out pairwise_accuracy. Read it with ladder.models.score."""
    from ladder import rm

    out = tiny_run / "rm"
    assert rm.main(["--model", str(tiny_sft), "--data", str(tiny_run / "data"), "--output_dir", str(out),
                    "--num_train_epochs", "2", "--learning_rate", "2e-3", "--report_to", "none",
                    "--save_strategy", "no"]) == 0
    return out


@pytest.fixture(scope="session")
def vllm_server(tiny_sft, tmp_path_factory):
    """`ladder vllm-serve` for the tiny SFT model on a free local port (CPU, one thread): yields the
    port, and stops the server (its engine processes with it) at the end of the session. One server
    for every test that needs one (it takes ~30 s to start); each test pushes the weights it samples
    from first, as the stages do, so what an earlier test left in it does not matter. Idle, it uses no CPU."""
    import socket
    import subprocess
    import sys

    from ladder.runtime import vllm_available

    if not vllm_available():
        pytest.skip("vLLM is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(tmp_path_factory.mktemp("vllm_server") / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "ladder.cli", "vllm-serve", "--model", str(tiny_sft),
                                   "--port", str(port), "--max_model_len", "256", "--threads", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"})
    try:
        yield port
    finally:
        server.terminate()
        server.wait(60)
