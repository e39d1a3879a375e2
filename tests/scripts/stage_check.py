"""Run ladder stages one after another under one `accelerate launch`, recording what each rank holds.

    accelerate launch ... tests/scripts/stage_check.py plan.json      (LADDER_CHECK_OUT=dir)

plan.json is a list of [stage, [its args...]]. Each stage runs exactly as `ladder <stage>` would (its own
main), in turn in the same processes, as `accelerate launch -m ladder.pipeline` runs a ladder. Around
each, without changing it: the first model the stage hands to `Accelerator.prepare` (the model it trains;
TRL's Trainer prepares it too) is remembered, with a hook that fingerprints the first batch it sees on
this rank. After the stage returns, every rank writes LADDER_CHECK_OUT/<stage>/rank<r>.json: its rank and
world size as its Accelerator sees them, the engine, the fingerprint of its first batch, and a hash of
the full weights it holds (gathered first under ZeRO-3). Rank 0 also writes <stage>/logits.pt: the
in-memory, still wrapped (DDP / DeepSpeed engine) model's logits on a fixed input, for the test to
compare with the checkpoint the stage saved, loaded in one process. A stage that fails is recorded in
<stage>/error.txt and ends the run (exit code 1).
"""

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

STAGES = {"sft": "ladder.sft", "rm": "ladder.rm", "dpo": "ladder.dpo", "grpo": "ladder.grpo", "ppo": "ladder.ppo",
          "rloo": "ladder.rloo", "pretrain": "ladder.pretrain.train"}
TEXT = "12 + 7 = 12 + 7 = 19"


def digest(x) -> str:
    import torch

    h = hashlib.sha1()

    def feed(v):
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(str(k).encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            for item in v:
                feed(item)
        else:
            h.update(repr(v).encode())

    feed(x)
    return h.hexdigest()[:16]


def main() -> int:
    import faulthandler
    import signal
    import traceback

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints where a hung rank waits
    plan = json.loads(Path(sys.argv[1]).read_text())
    out = Path(os.environ["LADDER_CHECK_OUT"])
    import accelerate
    import torch

    from ladder.runtime import reset_accelerate

    seen = {}
    prepare = accelerate.Accelerator.prepare

    def remembering_prepare(self, *args, **kwargs):
        result = prepare(self, *args, **kwargs)
        if "model" not in seen:
            results = result if isinstance(result, tuple) else (result,)
            for arg, res in zip(args, results):
                if isinstance(arg, torch.nn.Module):
                    seen.update(accelerator=self, model=arg, wrapped=res)

                    def first_batch(module, a, kw, seen=seen, arg=arg):
                        if seen.get("model") is arg and "batch" not in seen:
                            seen["batch"] = digest(kw.get("input_ids", a[0] if a else None))

                    arg.register_forward_pre_hook(first_batch, with_kwargs=True)
                    break
        return result

    accelerate.Accelerator.prepare = remembering_prepare
    end_training = accelerate.Accelerator.end_training

    def recording_end_training(self):  # ladder's own loops end here, and this destroys the process group
        if seen and "recorded" not in seen:
            record(seen, seen["argv"], seen["out"])
        return end_training(self)

    accelerate.Accelerator.end_training = recording_end_training
    for stage, argv in plan:
        seen.clear()
        seen.update(argv=argv, out=out / stage)
        (out / stage).mkdir(parents=True, exist_ok=True)
        reset_accelerate()  # each stage sets up accelerate afresh, as `ladder run` does between stages
        try:
            assert importlib.import_module(STAGES[stage]).main(argv) == 0
            if "recorded" not in seen:  # TRL stages keep the process group
                record(seen, argv, out / stage)
        except Exception:  # the other ranks would wait for this one in the next stage: stop here
            (out / stage / "error.txt").write_text(traceback.format_exc())
            traceback.print_exc()
            return 1
    return 0


def record(seen, argv, out) -> None:
    import torch
    from transformers import AutoTokenizer

    from ladder.runtime import engine_name

    seen["recorded"] = True
    acc, model, wrapped = seen["accelerator"], seen["model"], seen["wrapped"]
    acc.wait_for_everyone()  # rank 0 has published the checkpoint
    params = list(model.parameters())
    zero3 = any(hasattr(p, "ds_id") for p in params)
    if zero3:  # each rank holds shards: gather the full weights (all ranks) to hash them
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            weights = digest([p.data for p in params])
    else:
        weights = digest([p.data for p in params])

    output_dir = Path(argv[argv.index("--output_dir") + 1])
    ids = AutoTokenizer.from_pretrained(output_dir)(TEXT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    # the wrapped model (under ZeRO-3 every rank takes part in this forward); PPO trains its policy and
    # critic as one module: there, the policy inside it (ZeRO-3 gathers each submodule as it runs)
    inner = acc.unwrap_model(wrapped)
    net = inner.policy if hasattr(inner, "policy") else wrapped
    training = net.training
    net.eval()
    with torch.no_grad():
        logits = net(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
    net.train(training)
    rank = acc.process_index
    info = {"rank": rank, "world": acc.num_processes, "engine": engine_name(acc), "batch": seen.get("batch"),
            "weights": weights, "zero3": zero3, "backend": str(acc.state.backend)}
    (out / f"rank{rank}.json").write_text(json.dumps(info))
    if rank == 0:
        torch.save({"input_ids": ids, "logits": logits}, out / "logits.pt")
    acc.wait_for_everyone()

if __name__ == "__main__":
    from ladder.runtime import exit_process

    exit_process(main())  # as every stage ends: a gloo rank must not finalise (ladder.runtime.exit_process)
