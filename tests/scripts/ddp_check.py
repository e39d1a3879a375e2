"""Run under `accelerate launch`: proves the ranks are real and gradients are averaged.

Each rank computes a gradient on different data; after backward, DDP must have replaced every
rank's gradient with the mean over ranks. Writes one JSON line per rank to $LADDER_DDP_OUT.
It starts and ends as a ladder stage does (setup_process, stage_entry): a finished rank must exit 0.
"""

import json
import os

from ladder.runtime import setup_process, stage_entry

setup_process()  # what every ladder stage does first

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402


def main(argv) -> int:
    acc = Accelerator()
    torch.manual_seed(0)
    model = acc.prepare(torch.nn.Linear(4, 1, bias=False))
    x = torch.full((1, 4), float(acc.process_index + 1))  # rank r sees data (r + 1)
    model(x).sum().backward()
    local = x.flatten()  # d(sum(w.x))/dw = x: the gradient this rank alone would have
    grad = acc.unwrap_model(model).weight.grad.flatten()
    gathered = acc.gather(local.unsqueeze(0))
    with open(os.environ["LADDER_DDP_OUT"], "a") as f:
        f.write(json.dumps({"rank": acc.process_index, "world": acc.num_processes,
                            "grad": grad.tolist(), "mean_local": gathered.mean(0).tolist(),
                            "local": local.tolist(), "backend": str(acc.state.backend)}) + "\n")
    acc.wait_for_everyone()
    return 0


if __name__ == "__main__":
    stage_entry(main)
