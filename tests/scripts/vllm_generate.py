"""Load a checkpoint in vLLM on the CPU and generate greedily; prints JSON.

vLLM-CPU forces spawned workers, so engine creation sits under __main__ (or runs in-process with
VLLM_ENABLE_V1_MULTIPROCESSING=0). fp32 because vLLM would otherwise pick bf16 (emulated here).
"""

import json
import sys

if __name__ == "__main__":
    from vllm import LLM, SamplingParams

    llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=256,
              gpu_memory_utilization=0.05, seed=0)
    outs = llm.generate([sys.argv[2]], SamplingParams(temperature=0.0, max_tokens=16))
    print("RESULT " + json.dumps({"text": outs[0].outputs[0].text, "ids": list(outs[0].outputs[0].token_ids)}))
