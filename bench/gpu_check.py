"""The GPU check: ladder's stages, each for a few steps in bf16 on one GPU, against the bf16 matrix-multiply
peak measured in the same run. Prints one table; a failing row says why in one line and the rest still run.

    bash bench/gpu_check.sh                        # on a GPU machine (the device tool: see gpu_check.sh's header)
    python bench/gpu_check.py --dry-run            # the plan and every command it would run; no GPU, no torch
    python bench/gpu_check.py --cpu-smoke          # the same rows at tiny sizes on the CPU (a test runs this)
    python bench/gpu_check.py --only peak,pretrain --set pretrain.max_steps=200

Rows (each a separate process, so one failure or hang cannot take the others down):
    peak      torch.matmul at a few sizes in fp32 (TF32 off) and bf16: the peak MFU is measured against
    pretrain  `python -m ladder.pretrain` (ladder's accelerate loop) on the gpt2-124m preset, bf16 autocast
    sft       `python -m ladder.sft` (TRL SFTTrainer), bf16, from a randomly initialised gpt2-124m base
    grpo      `python -m ladder.grpo` (TRL GRPOTrainer), HF generate rollouts, bf16
    ppo       `python -m ladder.ppo` (ladder's PPO: policy, reference, reward model, critic), HF rollouts, bf16
    fsdp      `accelerate launch --config_file accelerate_configs/fsdp.yaml --num_processes 1 -m ladder.pretrain`
Before them, prep steps build the data (`ladder.data.build`), the tokenizer (`ladder.pretrain.tokenizer`)
and the random-init base the post-training rows start from (`gpu_check.py make-base`, ladder's preset).

How a row is measured: every stage logs to TensorBoard once a step (logging_steps 1; pretraining every few
steps); the steady rate is read off those events' wall clock times with the first step (CUDA start-up,
allocator, kernel choice) left out. tokens/s counts real (non-pad) tokens. Model FLOPs per token:
    pretrain, fsdp   6 N + 12 L d s           (forward + backward, attention included, s = seq_len)
    sft              6 N                      (forward + backward; attention left out: short chats)
    grpo             8 N                      (2 N sampling, prompt + completion, + 6 N training; beta 0:
                                               no reference pass, one iteration: no old-logprob pass)
    ppo              (10 + 12 E) N            (2 N sampling; forward of policy, critic, reference and
                                               reward model 8 N; E epochs of policy + critic updates 12 N)
N = parameters in matrix products (an untied input embedding left out), L layers, d width.
MFU = model FLOPs/s / the measured matmul peak of the precision the rows run in (bf16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import mfu  # noqa: E402  (bench/mfu.py: torch-free at import)

ROWS = ("peak", "pretrain", "sft", "grpo", "ppo", "fsdp")

# Sizes per mode. "gpu": one H200-class GPU, every row in well under a minute once started.
# "cpu": --cpu-smoke, the same commands at sizes a 2-core CPU runs in seconds.
SIZES = {
    "gpu": dict(
        device="cuda", preset="gpt2-124m", max_pos=1024, peak_sizes=(2048, 4096, 8192), peak_seconds=0.3,
        data=dict(corpus_docs=4000, sft_train=3000, prefs_train=16, rl_train=1024, test_size=128),
        pretrain=dict(seq_len=1024, batch_size=32, max_steps=100, logging_steps=10),
        fsdp=dict(seq_len=1024, batch_size=32, max_steps=60, logging_steps=10),
        sft=dict(per_device_train_batch_size=128, max_steps=20, max_length=256),
        grpo=dict(per_device_train_batch_size=128, num_generations=8, max_steps=5, max_completion_length=128),
        ppo=dict(per_device_train_batch_size=64, num_mini_batches=2, num_ppo_epochs=2, max_steps=5,
                 response_length=128),
        timeouts=dict(data=120, tokenizer=120, base=120, peak=120, pretrain=180, sft=180, grpo=200, ppo=200,
                      fsdp=180),
        budget=480,
    ),
    "cpu": dict(
        device="cpu", preset="tiny", max_pos=512, peak_sizes=(128, 256, 512), peak_seconds=0.2,
        data=dict(corpus_docs=300, sft_train=64, prefs_train=16, rl_train=64, test_size=16),
        pretrain=dict(seq_len=64, batch_size=8, max_steps=8, logging_steps=2),
        fsdp=dict(seq_len=64, batch_size=8, max_steps=6, logging_steps=2),
        sft=dict(per_device_train_batch_size=8, max_steps=4, max_length=256),
        grpo=dict(per_device_train_batch_size=8, num_generations=4, max_steps=3, max_completion_length=16),
        ppo=dict(per_device_train_batch_size=4, num_mini_batches=2, num_ppo_epochs=2, max_steps=3,
                 response_length=16),
        timeouts=dict(data=120, tokenizer=120, base=120, peak=120, pretrain=300, sft=300, grpo=300, ppo=300,
                      fsdp=300),
        budget=1800,
    ),
}


@dataclasses.dataclass
class Step:
    name: str
    kind: str  # "prep" or "row"
    what: str  # one line: what runs
    argv: list[str]
    needs: tuple[str, ...] = ()
    timeout: float = 300.0
    out: str | None = None  # the folder it writes (read by the measurement)
    measure: str | None = None  # pretrain / trl / ppo / peak
    flops: str = ""  # the per-token FLOPs formula, as text
    skip: str | None = None  # why it does not run in this mode
    stage: str | None = None  # the ladder module whose config the --key value pairs fill (for tests)
    recipe: str | None = None  # the recipe it starts from
    env: dict = dataclasses.field(default_factory=dict)

    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(shlex.quote(a) for a in self.argv)


def kv(**pairs) -> list[str]:
    """--key value pairs, values written as a recipe would read them (YAML)."""
    out = []
    for key, value in pairs.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = "null"
        elif isinstance(value, (list, dict)):
            value = json.dumps(value)
        out += [f"--{key}", str(value)]
    return out


def set_arg(argv: list[str], key: str, value: str) -> list[str]:
    """argv with `--key value` replaced (or appended)."""
    argv = list(argv)
    flag = f"--{key}"
    if flag in argv:
        i = argv.index(flag)
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            argv[i + 1] = value
        else:
            argv.insert(i + 1, value)
    else:
        argv += [flag, value]
    return argv


def arg_value(argv: list[str], key: str, default=None):
    flag = f"--{key}"
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else default


def build_plan(mode: str = "gpu", work: str | os.PathLike = "/tmp/ladder-gpu-check", precision: str = "bf16",
               python: str | None = None, only: list[str] | None = None, overrides: list[str] | None = None,
               fsdp_on_cpu: bool = False) -> list[Step]:
    """The steps, in order: prep steps first, then the rows. Builds commands only: imports nothing heavy."""
    if mode not in SIZES:
        raise ValueError(f"mode must be one of {', '.join(SIZES)}, got {mode!r}")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    z = SIZES[mode]
    w = Path(work)
    py = python or sys.executable
    bf16 = precision == "bf16"
    to = z["timeouts"]
    script = str(BENCH / "gpu_check.py")
    data, tok, base = str(w / "data"), str(w / "tokenizer"), str(w / "base")
    pre = dict(data=data, tokenizer=tok, model=z["preset"], mixed_precision="bf16" if bf16 else "no",
               warmup_steps=5, eval_every=10**9, eval_batches=1, save_every=10**9, report_to="tensorboard")
    steps = [
        Step("data", "prep", "ladder data: built-in tasks, small",
             [py, "-m", "ladder.data.build", "--config", "recipes/tiny/data.yaml", *kv(output_dir=data, **z["data"])],
             timeout=to["data"], out=data, stage="ladder.data.build", recipe="recipes/tiny/data.yaml"),
        Step("tokenizer", "prep", "ladder tokenizer: byte-level BPE + chat template",
             [py, "-m", "ladder.pretrain.tokenizer", "--config", "recipes/tiny/tokenizer.yaml",
              *kv(data=data, output_dir=tok)],
             needs=("data",), timeout=to["tokenizer"], out=tok, stage="ladder.pretrain.tokenizer",
             recipe="recipes/tiny/tokenizer.yaml"),
        Step("base", "prep", f"random-init {z['preset']} base for the post-training rows (ladder preset)",
             [py, script, "make-base", *kv(tokenizer=tok, preset=z["preset"], output_dir=base,
                                           max_position_embeddings=z["max_pos"])],
             needs=("tokenizer",), timeout=to["base"], out=base),
        Step("peak", "row", f"torch.matmul n={','.join(map(str, z['peak_sizes']))}, fp32 (TF32 off) and bf16",
             [py, script, "peak", *kv(device=z["device"], sizes=",".join(map(str, z["peak_sizes"])),
                                      dtypes="fp32,bf16", seconds=z["peak_seconds"], json=str(w / "peak.json"))],
             timeout=to["peak"], out=str(w / "peak.json"), measure="peak", flops="2 n^3 per product"),
        Step("pretrain", "row", f"ladder pretrain {z['preset']} {precision}, "
                                f"{z['pretrain']['batch_size']}x{z['pretrain']['seq_len']} tokens/step",
             [py, "-m", "ladder.pretrain", "--config", "recipes/tiny/pretrain.yaml",
              *kv(**pre, output_dir=str(w / "pretrain"), **z["pretrain"])],
             needs=("tokenizer",), timeout=to["pretrain"], out=str(w / "pretrain"), measure="pretrain",
             flops="6N + 12 L d s", stage="ladder.pretrain.train", recipe="recipes/tiny/pretrain.yaml"),
        Step("sft", "row", f"ladder sft (TRL SFTTrainer) {precision}, batch {z['sft']['per_device_train_batch_size']}",
             [py, "-m", "ladder.sft", "--config", "recipes/tiny/sft.yaml",
              *kv(model=base, data=data, output_dir=str(w / "sft"), bf16=bf16, **z["sft"],
                  max_train_samples=z["sft"]["max_steps"] * z["sft"]["per_device_train_batch_size"],
                  num_train_epochs=1, eval_samples=0, test_split=None, save_strategy="no", logging_steps=1,
                  report_to="tensorboard", gradient_checkpointing=False, use_lora=False)],
             needs=("base",), timeout=to["sft"], out=str(w / "sft"), measure="trl", flops="6N",
             stage="ladder.sft", recipe="recipes/tiny/sft.yaml"),
        Step("grpo", "row", f"ladder grpo (TRL GRPOTrainer, HF rollouts) {precision}, "
                            f"{z['grpo']['per_device_train_batch_size']} completions x "
                            f"{z['grpo']['max_completion_length']} tokens/step",
             [py, "-m", "ladder.grpo", "--config", "recipes/tiny/grpo.yaml",
              *kv(model=base, data=data, output_dir=str(w / "grpo"), rollout_backend="hf", bf16=bf16, **z["grpo"],
                  beta=0.0, eval_samples=0, heldout_every=0, save_strategy="no", logging_steps=1,
                  report_to="tensorboard", mask_truncated_completions=False, use_lora=False)],
             needs=("base",), timeout=to["grpo"], out=str(w / "grpo"), measure="trl", flops="8N",
             stage="ladder.grpo", recipe="recipes/tiny/grpo.yaml"),
        Step("ppo", "row", f"ladder ppo (HF rollouts; policy, ref, RM, critic) {precision}, "
                           f"{z['ppo']['per_device_train_batch_size']} prompts x {z['ppo']['response_length']} tokens/step",
             [py, "-m", "ladder.ppo", "--config", "recipes/tiny/ppo.yaml",
              *kv(model=base, reward_model=base, critic_init="reward_model", data=data, output_dir=str(w / "ppo"),
                  rollout_backend="hf", bf16=bf16, **z["ppo"], eval_samples=0, heldout_every=0, save_steps=0,
                  logging_steps=1, report_to="tensorboard", use_lora=False)],
             needs=("base",), timeout=to["ppo"], out=str(w / "ppo"), measure="ppo",
             flops=f"(10 + 12 E) N, E={z['ppo']['num_ppo_epochs']}", stage="ladder.ppo", recipe="recipes/tiny/ppo.yaml"),
        Step("fsdp", "row", f"ladder pretrain under FSDP2 (accelerate_configs/fsdp.yaml), 1 process, {precision}",
             [py, "-m", "accelerate.commands.launch", "--config_file", "accelerate_configs/fsdp.yaml",
              "--num_processes", "1", "--mixed_precision", "bf16" if bf16 else "no",
              "-m", "ladder.pretrain", "--config", "recipes/tiny/pretrain.yaml",
              *kv(**pre, output_dir=str(w / "fsdp"), **z["fsdp"])],
             needs=("tokenizer",), timeout=to["fsdp"], out=str(w / "fsdp"), measure="pretrain",
             flops="6N + 12 L d s", stage="ladder.pretrain.train", recipe="recipes/tiny/pretrain.yaml",
             skip=None if mode == "gpu" or fsdp_on_cpu else
             "needs CUDA: on CPU accelerate runs FSDP as plain DDP and ladder refuses it (accelerate_configs/fsdp.yaml)"),
    ]
    for text in overrides or []:
        name, _, rest = text.partition(".")
        key, eq, value = rest.partition("=")
        target = next((s for s in steps if s.name == name), None)
        if target is None or not key or not eq:
            raise ValueError(f"--set {text!r}: expected STEP.KEY=VALUE with STEP one of "
                             f"{', '.join(s.name for s in steps)}")
        target.argv = set_arg(target.argv, key, value)
    if only:
        unknown = [r for r in only if r not in {s.name for s in steps}]
        if unknown:
            raise ValueError(f"--only: unknown row(s) {', '.join(unknown)}; rows are {', '.join(ROWS)}")
        keep = set(only)
        by_name = {s.name: s for s in steps}
        todo = list(keep)
        while todo:  # and everything they need
            for need in by_name[todo.pop()].needs:
                if need not in keep:
                    keep.add(need)
                    todo.append(need)
        steps = [s for s in steps if s.name in keep]
    return steps


# ---------------------------------------------------------------- running

@dataclasses.dataclass
class Result:
    name: str
    kind: str
    what: str
    status: str = "skipped"  # ok / failed / skipped
    error: str = ""
    seconds: float | None = None  # wall clock of the whole process
    step_seconds: float | None = None  # steady seconds per step
    tokens_per_s: float | None = None
    model_flops: float | None = None  # achieved model FLOP/s
    mfu: float | None = None
    note: str = ""
    log: str = ""
    planned_skip: bool = False  # skipped by the plan (a row this mode cannot run), not by a failure


def one_line_error(text: str) -> str:
    """The line that says what went wrong: ladder's `error: ...`, else a traceback's last
    `SomethingError: ...`, else the last line printed."""
    import re

    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    for pattern in (r"^error: ", r"^(\w+\.)*\w*(Error|Exception|Interrupt)\b.*", r"^Killed"):
        hits = [ln for ln in lines if re.match(pattern, ln)]
        if hits:
            return hits[-1][:240]
    return lines[-1][:240] if lines else "no output"


def run_step(step: Step, logs: Path, timeout: float, env: dict) -> tuple[int | None, float, str]:
    """(exit code or None on timeout, seconds, log text). Runs in its own process group, killed whole
    on timeout."""
    log_path = logs / f"{step.name}.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(f"$ {step.command()}\n")
        log.flush()
        proc = subprocess.Popen(step.argv, cwd=REPO, env={**env, **step.env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this call started
            proc.wait()
            code = None
    return code, time.perf_counter() - start, log_path.read_text(errors="replace")


def child_env(mode: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1", TQDM_MININTERVAL="5")
    if mode == "cpu":
        env.setdefault("OMP_NUM_THREADS", "1")
        env["CUDA_VISIBLE_DEVICES"] = ""
    # the repo first: `python -m ladder...` must find this tree's code when ladder is installed from it
    return env


# ---------------------------------------------------------------- measuring

def tb_scalars(folder: str | Path) -> dict[str, list[tuple[float, int, float]]]:
    """Every TensorBoard scalar under folder: tag -> [(wall_time, step, value)], by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for events in sorted(Path(folder).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
        for tag in acc.Tags().get("tensors", []):  # newer writers store scalars as 0-d tensors
            for e in acc.Tensors(tag):
                try:
                    import numpy as np
                    from tensorboard.util import tensor_util

                    value = float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)).reshape(-1)[0])
                except Exception:
                    continue
                out.setdefault(tag, []).append((e.wall_time, e.step, value))
    return {k: sorted(v, key=lambda p: (p[1], p[0])) for k, v in out.items()}


def steady(points: list[tuple[float, int, float]], skip_first: int = 1):
    """(seconds per step, value gained per second) between the events after the first `skip_first`
    (warm-up), from their wall clock times. None where fewer than two events are left."""
    pts = [p for i, p in enumerate(points) if i >= skip_first]
    if len(pts) < 2:
        pts = points[-2:] if len(points) >= 2 else []
    if len(pts) < 2:
        return None, None
    (w0, s0, v0), (w1, s1, v1) = pts[0], pts[-1]
    if w1 <= w0 or s1 <= s0:
        return None, None
    return (w1 - w0) / (s1 - s0), (v1 - v0) / (w1 - w0)


def manifest_metrics(folder: str | Path) -> dict:
    try:
        return json.loads((Path(folder) / "ladder.json").read_text()).get("metrics", {})
    except (OSError, ValueError):
        return {}


def mean_prompt_tokens(data: str, tokenizer: str, limit: int = 512) -> float:
    """Mean tokens in an RL prompt, chat template and generation prompt included."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    rows = [json.loads(line) for line in Path(data, "rl_train.jsonl").read_text().splitlines()[:limit] if line.strip()]
    lengths = []
    for r in rows:
        p = r["prompt"]
        text = p if isinstance(p, str) else tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        lengths.append(len(tok(text, add_special_tokens=False)["input_ids"]))
    return sum(lengths) / max(1, len(lengths))


def measure(step: Step, res: Result, peak: float | None, work: Path) -> None:
    """Fill res's steady step time, tokens/s, model FLOP/s and MFU from what the step wrote."""
    argv = step.argv
    if step.measure == "peak":
        peaks = json.loads(Path(step.out).read_text())
        res.model_flops = max(p["flops"] for p in peaks.values())
        res.note = mfu.peaks_line(peaks)
        return
    facts = mfu.checkpoint_facts(step.out if (Path(step.out) / "config.json").is_file() else work / "base")
    n = facts["matmul_params"]
    per_token = None
    if step.measure == "pretrain":
        seq, batch = int(arg_value(argv, "seq_len")), int(arg_value(argv, "batch_size"))
        rates = [v for _, _, v in tb_scalars(Path(step.out) / "logs").get("train/tokens_per_s", []) if v > 0]
        if len(rates) >= 2:
            res.tokens_per_s = statistics.median(rates[1:])  # the first window holds the warm-up
            res.note = f"median of {len(rates) - 1} logging windows after the first"
        else:
            res.tokens_per_s = manifest_metrics(step.out).get("tokens_per_s")
            res.note = "whole run incl. warm-up (manifest)"
        if res.tokens_per_s:
            res.step_seconds = seq * batch / res.tokens_per_s
        per_token = mfu.train_flops_per_token(n, facts["layers"], facts["width"], seq)
    elif step.measure == "trl":
        scalars = tb_scalars(step.out)
        step_s, rate = steady(scalars.get("train/num_tokens", []))
        res.step_seconds, res.tokens_per_s = step_s, rate
        points = len(scalars.get("train/num_tokens", []))
        res.note = f"{points} logged steps, first left out"
        if rate is None:
            m = manifest_metrics(step.out)
            res.note = "no per-step token counts in the logs"
            if m.get("samples_per_second"):
                res.note += f"; {m['samples_per_second']:.1f} samples/s (manifest)"
        mult = 6 if step.name == "sft" else 8
        if step.name == "grpo" and float(arg_value(argv, "beta", 0) or 0) > 0:
            mult += 2
        per_token = mult * n
    elif step.measure == "ppo":
        scalars = tb_scalars(Path(step.out) / "logs")
        lengths = scalars.get("ppo/length", [])
        step_s, _ = steady(lengths)
        batch = int(arg_value(argv, "per_device_train_batch_size"))
        epochs = int(arg_value(argv, "num_ppo_epochs"))
        if step_s:
            prompt = mean_prompt_tokens(arg_value(argv, "data"), arg_value(argv, "model"))
            response = statistics.mean(v for _, _, v in lengths[1:]) if len(lengths) > 1 else lengths[-1][2]
            res.step_seconds, res.tokens_per_s = step_s, batch * (prompt + response) / step_s
            res.note = f"{len(lengths)} steps, first left out; {prompt:.0f} prompt + {response:.0f} response tokens"
        else:
            res.note = "no per-step events in the logs"
        per_token = (10 + 12 * epochs) * n
    if per_token and res.tokens_per_s:
        res.model_flops = per_token * res.tokens_per_s
        res.mfu = res.model_flops / peak if peak else None
    res.note = (f"N={n / 1e6:.1f}M; " + res.note).strip("; ")


# ---------------------------------------------------------------- the table

def fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def table(results: list[Result], header: list[str]) -> str:
    lines = [*header, "",
             "| row | what ran | status | wall s | s/step | tokens/s | model FLOP/s | MFU | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append("| " + " | ".join([
            r.name if r.kind == "row" else f"({r.name})", r.what, status.replace("|", "\\|"), fmt(r.seconds, ".1f"),
            fmt(r.step_seconds, ".3g"), fmt(r.tokens_per_s, ",.0f"), mfu.fmt_flops(r.model_flops),
            fmt(r.mfu, ".1%"), r.note.replace("|", "\\|")]) + " |")
    return "\n".join(lines)


def device_line(mode: str) -> str:
    """What the rows ran on, from a child process (this one never imports torch)."""
    code = ("import torch,sys;c=torch.cuda.is_available();"
            "print(('%s, CUDA %s' % (torch.cuda.get_device_name(0), torch.version.cuda)) if c else 'no CUDA', "
            "'| torch', torch.__version__, '| threads', torch.get_num_threads())")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env=child_env(mode)).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    cpu = f"{mfu.cpu_name()}, {os.cpu_count()} cores"
    return f"device: {out or 'unknown (torch did not answer)'} | CPU {cpu}"


def run_plan(steps: list[Step], mode: str, work: Path, precision: str, budget: float) -> list[Result]:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = child_env(mode)
    started = time.perf_counter()
    results: dict[str, Result] = {}
    peak = None
    for step in steps:
        res = results[step.name] = Result(step.name, step.kind, step.what)
        failed_need = next((n for n in step.needs if n in results and results[n].status != "ok"), None)
        left = budget - (time.perf_counter() - started)
        if step.skip:
            res.error, res.planned_skip = step.skip, True
        elif failed_need:
            res.error = f"needs {failed_need}, which did not run"
        elif left < 15:
            res.error = f"out of time (budget {budget:.0f} s)"
        if res.error:
            print(f"[gpu_check] {step.name}: skipped ({res.error})", flush=True)
            continue
        print(f"[gpu_check] {step.name}: {step.command()}", flush=True)
        code, seconds, log = run_step(step, logs, min(step.timeout, left), env)
        res.seconds, res.log = seconds, str(logs / f"{step.name}.log")
        if code == 0:
            res.status = "ok"
            if step.kind == "row":
                try:
                    measure(step, res, peak, work)
                except Exception as e:  # the row ran; only reading its numbers failed
                    res.note = f"ran, but its numbers could not be read: {type(e).__name__}: {e}"[:240]
            if step.name == "peak":
                peaks = json.loads(Path(step.out).read_text())
                peak = peaks.get(precision, {}).get("flops")
        else:
            res.status = "failed"
            res.error = f"timed out after {seconds:.0f} s" if code is None else one_line_error(log)
            tail = "\n".join(log.splitlines()[-12:])
            print(f"[gpu_check] {step.name} FAILED ({res.error}); last lines of {res.log}:\n{tail}", flush=True)
        print(f"[gpu_check] {step.name}: {res.status} in {seconds:.1f} s", flush=True)
    return list(results.values())


# ---------------------------------------------------------------- subcommands run by the rows

def cmd_peak(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py peak")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--seconds", type=float, default=0.3)
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    if a.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no GPU", file=sys.stderr)
            return 2
    peaks = mfu.measure_peaks(a.device, a.dtypes.split(","), [int(s) for s in a.sizes.split(",")], a.seconds)
    Path(a.json).write_text(json.dumps(peaks, indent=1))
    print(mfu.peaks_line(peaks))
    return 0


def cmd_make_base(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py make-base")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--preset", default="gpt2-124m")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_position_embeddings", type=int, default=1024)
    a = p.parse_args(argv)
    from transformers import AutoTokenizer

    from ladder.pretrain.model import build_model, n_params

    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    model = build_model(a.preset, tok, max_position_embeddings=a.max_position_embeddings, seed=0)
    model.save_pretrained(a.output_dir)
    tok.save_pretrained(a.output_dir)
    print(f"base: {a.preset}, {n_params(model) / 1e6:.2f}M params, random init -> {a.output_dir}")
    return 0


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "peak":
        return cmd_peak(argv[1:])
    if argv and argv[0] == "make-base":
        return cmd_make_base(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", "--plan", action="store_true", dest="dry_run",
                   help="print the plan and the commands; run nothing (needs no GPU, imports no torch)")
    p.add_argument("--cpu-smoke", action="store_true", help="every row at tiny sizes on the CPU")
    p.add_argument("--work", default=None, help="working folder (default: a new temp dir)")
    p.add_argument("--out", default=None, help="also write the table (gpu_check.md) and results (gpu_check.json) here")
    p.add_argument("--only", default=None, help=f"comma-separated rows ({','.join(ROWS)}); their prep steps come too")
    p.add_argument("--set", action="append", default=[], metavar="STEP.KEY=VALUE",
                   help="override one argument of a step's command, e.g. --set pretrain.max_steps=200")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--budget", type=float, default=None, help="seconds for all steps (default: 480 on GPU)")
    p.add_argument("--fsdp-on-cpu", action="store_true", help="run the fsdp row in --cpu-smoke too (it fails there)")
    a = p.parse_args(argv)
    mode = "cpu" if a.cpu_smoke else "gpu"
    if a.work:
        work = Path(a.work)
    elif a.dry_run:  # nothing is written: a name only
        work = Path(tempfile.gettempdir()) / "ladder-gpu-check-XXXX"
    else:
        work = Path(tempfile.mkdtemp(prefix="ladder-gpu-check-"))
    try:
        steps = build_plan(mode, work, a.precision, only=a.only.split(",") if a.only else None, overrides=a.set,
                           fsdp_on_cpu=a.fsdp_on_cpu)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget = a.budget if a.budget is not None else SIZES[mode]["budget"]
    if a.dry_run:
        print(f"gpu_check plan ({mode}, {a.precision}, work {work}, budget {budget:.0f} s):")
        for s in steps:
            state = f"skip: {s.skip}" if s.skip else f"timeout {s.timeout:.0f} s"
            flops = f"; FLOPs/token {s.flops}" if s.flops and s.kind == "row" else ""
            print(f"\n[{s.kind}] {s.name}: {s.what} ({state}{flops})\n  $ {s.command()}")
        return 0

    t0 = time.perf_counter()
    head = [f"# ladder GPU check ({'CPU smoke, tiny sizes' if mode == 'cpu' else 'GPU'}, {a.precision})", "",
            device_line(mode)]
    results = run_plan(steps, mode, work, a.precision, budget)
    peak_row = next((r for r in results if r.name == "peak"), None)
    head += [f"MFU = model FLOP/s / the {a.precision} torch.matmul peak measured in this run"
             + ("" if peak_row and peak_row.status == "ok" else " (no peak measured: MFU left blank)") + ".",
             "Model FLOPs per token: pretrain/fsdp 6N + 12 L d s; sft 6N; grpo 8N (2N sampling + 6N training); "
             "ppo (10 + 12 E) N (sampling 2N, policy/critic/reference/RM forwards 8N, E epochs of policy + critic "
             "updates 12N); N = parameters in matrix products.",
             f"Steady rates from per-step TensorBoard events with the first step left out; wall s = the whole "
             f"process (imports, loading, warm-up). Total {time.perf_counter() - t0:.0f} s; logs in {work / 'logs'}."]
    text = table(results, head)
    print("\n" + text + "\n", flush=True)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(text + "\n")
        (out / "gpu_check.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    return 0 if all(r.status == "ok" or r.planned_skip for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
