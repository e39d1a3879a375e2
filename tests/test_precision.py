"""ladder.precision: one place decides bf16 or fp32, from the recipe, LADDER_PRECISION or the hardware,
and the manifest records it. The hardware is faked here (a cpuinfo file, no CUDA); the last test trains
the tiny model in bf16 for real (emulated on an AVX2-only CPU: slow, so only a few steps)."""

from __future__ import annotations

import json
import types

import pytest

from ladder import precision
from ladder.errors import LadderError

AVX2 = "flags\t\t: fpu vme sse sse2 avx avx2 fma bmi2\n"
XEON = "flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.fixture
def cpu(monkeypatch):
    """be(flags): pretend to be a CPU with these /proc/cpuinfo flags, and no GPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def be(flags_line: str):
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(flags_line.split(":", 1)[1].split()))
        precision.native_bf16.cache_clear()

    yield be
    precision.native_bf16.cache_clear()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: some Xeon\n" + XEON + "processor\t: 1\n" + XEON)
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= precision.cpu_flags(str(f))
    assert precision.cpu_flags(str(tmp_path / "absent")) == set()


def test_the_hardware_decides_bf16_only_where_the_cpu_has_it(cpu, monkeypatch):
    monkeypatch.setenv(precision.ENV, "auto")
    cpu(AVX2)
    assert precision.choose() == (False, "CPU without bf16 instructions (bf16 would be emulated: slower)")
    cpu(XEON)
    bf16, why = precision.choose()
    assert bf16 and "amx_bf16" in why and "avx512_bf16" in why


def test_the_recipe_beats_the_environment_which_beats_the_hardware(cpu, monkeypatch):
    cpu(XEON)
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.choose() == (False, "LADDER_PRECISION=fp32")
    assert precision.choose(True) == (True, "set in the recipe")
    monkeypatch.setenv(precision.ENV, "half")
    with pytest.raises(LadderError, match="LADDER_PRECISION='half': must be bf16, fp32 or auto"):
        precision.choose()


def test_a_bad_environment_value_is_named_as_the_environment_s(monkeypatch, capsys):
    """`LADDER_PRECISION=fp16 ladder sft ...` said "command line: LADDER_PRECISION=...", as if a flag were
    wrong: every ladder command checks the variable before its stage reads a config."""
    from ladder.cli import main

    monkeypatch.setenv(precision.ENV, "fp16")
    assert main(["sft", "--max_steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: environment variable LADDER_PRECISION='fp16': must be bf16, fp32 or auto"


def test_every_stage_config_takes_the_decision(cpu, monkeypatch):
    from ladder.runtime import cpu_training_defaults

    monkeypatch.setenv(precision.ENV, "auto")
    cpu(XEON)
    unset, asked_fp32, fp16 = (types.SimpleNamespace(bf16=None, fp16=False, use_cpu=False),
                               types.SimpleNamespace(bf16=False, fp16=False, use_cpu=False),
                               types.SimpleNamespace(bf16=None, fp16=True, use_cpu=False))
    for args in (unset, asked_fp32, fp16):
        cpu_training_defaults(args)
    assert (unset.bf16, asked_fp32.bf16, fp16.bf16) == (True, False, False)
    assert unset.use_cpu  # no CUDA: the CPU trains
    cpu(AVX2)
    unset.bf16 = None
    cpu_training_defaults(unset)
    assert unset.bf16 is False


def test_grpo_corrects_for_a_bf16_sampler(cpu, monkeypatch):
    """In bf16 the vLLM engine samples from a rounded copy of the policy: TRL's correction goes on."""
    from ladder.config import load_config
    from ladder.grpo import GRPOStageConfig

    cpu(XEON)
    args = ["--output_dir", "/tmp/unused", "--report_to", "none"]
    monkeypatch.setenv(precision.ENV, "auto")
    cfg = load_config(GRPOStageConfig, args)
    assert cfg.bf16 and cfg.vllm_importance_sampling_correction
    monkeypatch.setenv(precision.ENV, "fp32")
    cfg = load_config(GRPOStageConfig, args)
    assert not cfg.bf16 and not cfg.vllm_importance_sampling_correction  # exact sync: a ratio of 1


def test_the_manifest_records_the_precision(tmp_path):
    from ladder.manifest import write_manifest

    m = write_manifest(tmp_path / "a", stage="sft", config={"bf16": True, "fp16": False})
    assert m["precision"]["train"] == "bf16" and m["precision"]["hardware"]
    m = write_manifest(tmp_path / "b", stage="pretrain", config={"mixed_precision": "no"})
    assert m["precision"]["train"] == "fp32"
    assert "precision" not in write_manifest(tmp_path / "c", stage="eval", config={"runs": []})


def test_sft_trains_in_bf16_and_saves_fp32(tiny_base, tiny_data, tmp_path):
    """The bf16 path for real: autocast forward, fp32 weights and optimizer, an fp32 checkpoint that
    transformers loads, and the manifest saying bf16."""
    import math

    from safetensors import safe_open

    from ladder import sft

    out = tmp_path / "sft-bf16"
    sft.main(["--model", str(tiny_base), "--data", str(tiny_data), "--output_dir", str(out), "--bf16", "true",
              "--max_steps", "3", "--per_device_train_batch_size", "4", "--max_train_samples", "12",
              "--eval_samples", "0", "--report_to", "none", "--save_strategy", "no"])
    manifest = json.loads((out / "ladder.json").read_text())
    assert manifest["precision"]["train"] == "bf16" and manifest["config"]["bf16"] is True
    assert math.isfinite(manifest["metrics"]["train_loss"])
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float32"}


def test_after_training_the_model_is_scored_in_fp32(tiny_sft):
    """accelerate wraps a bf16 model's forward in autocast; a stage's "after" scores must not be measured
    through it when its "before" scores were not (GRPO measured 48.0% through it, 46.5% in fp32)."""
    import types

    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    from ladder.distributed import unsharded
    from ladder.runtime import reset_accelerate

    reset_accelerate()
    x = torch.tensor([[1, 2, 3, 4, 5]])
    model = AutoModelForCausalLM.from_pretrained(str(tiny_sft), dtype=torch.float32)
    with torch.no_grad():
        fp32 = model(x).logits
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    prepared = accelerator.prepare(model)
    with torch.no_grad():
        assert not torch.equal(prepared(x).logits, fp32)  # the training forward: bf16 autocast
        plain = unsharded(types.SimpleNamespace(accelerator=accelerator, model=prepared))
        assert torch.equal(plain(x).logits, fp32)
    reset_accelerate()


def test_a_rollout_casts_each_weight_once_and_samples_the_same_tokens(tiny_sft):
    """accelerate's autocast wrapper casts every weight to bf16 again at each forward, so once per generated
    token; inside precision.cast_once the casts are cached for the whole rollout, and are the same casts."""
    import torch
    from accelerate import Accelerator
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoModelForCausalLM

    from ladder.runtime import reset_accelerate

    reset_accelerate()
    model = AutoModelForCausalLM.from_pretrained(str(tiny_sft), dtype=torch.float32)
    prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare(model)
    weights = {p.data_ptr() for p in model.parameters()}

    class WeightCasts(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in weights:
                WeightCasts.n += 1
            return func(*args, **(kwargs or {}))

    def rollout(cached: bool):
        WeightCasts.n = 0
        torch.manual_seed(0)
        with torch.no_grad(), precision.cast_once(cached), WeightCasts():
            out = prepared.generate(torch.tensor([[1, 5, 9, 13]] * 4), max_new_tokens=12, min_new_tokens=12,
                                    do_sample=True, temperature=1.0, pad_token_id=0)
        return out, WeightCasts.n

    per_forward, casts_per_forward = rollout(cached=False)
    once, casts_once = rollout(cached=True)
    assert torch.equal(per_forward, once)
    linear = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert casts_once <= linear  # each matmul weight once for the 12 tokens
    assert casts_per_forward >= 12 * linear * 0.9  # ... against once per token without it
    reset_accelerate()
