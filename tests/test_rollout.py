"""ladder.rollout: vLLM sees exactly the trainer's weights after every sync (colocate and server),
LoRA adapters included, and the trainer's own weights are never touched by a sync."""

import copy
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ladder import rollout, runtime
from ladder.errors import LadderError

needs_vllm = pytest.mark.skipif(not runtime.vllm_available(), reason="vLLM not installed")


def sequences(path, n=6):
    tok = AutoTokenizer.from_pretrained(path)
    texts = [tok.apply_chat_template([{"role": "user", "content": f"What is {i} + {2 * i + 3}?"}], tokenize=False,
                                     add_generation_prompt=True) + f"<think>{i} + {2 * i + 3}" for i in range(n)]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def trainer_logprobs(model, seqs):
    """log p(token_t | tokens_<t) from the trainer's fp32 forward."""
    out = []
    model.eval()  # no dropout (LoRA's included)
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            logp = model(ids).logits[0, :-1].float().log_softmax(-1)
            out.append(logp.gather(-1, ids[0, 1:, None])[:, 0].tolist())
    return out


def max_gap(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def one_step(model, seqs, lr=1e-2):
    """One real optimizer step on the sequences' LM loss: the weights move the way training moves them."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for s in seqs:
        ids = torch.tensor([s])
        model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()


def lora_model(base):
    from peft import LoraConfig, get_peft_model

    # non-zero B (init_lora_weights=False): the adapters change the outputs from the start
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))


def test_named_weights_merge_lora_into_a_copy(tiny_sft):
    torch.manual_seed(0)
    model = lora_model(AutoModelForCausalLM.from_pretrained(tiny_sft))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    weights = dict(rollout.named_weights(model))
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(weights) == {n for n, _ in merged.items() if n != "lm_head.weight"}  # tied head: vLLM ties it
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, merged[name], rtol=0, atol=1e-6)
    base = AutoModelForCausalLM.from_pretrained(tiny_sft).state_dict()
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(weights[q], base[q])  # the adapters really are in the synced weights
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # trainer untouched


@needs_vllm
@pytest.mark.slow
def test_grpo_trainer_sync_carries_lora_adapters(tiny_run, tiny_sft, tmp_path):
    """Through ladder's GRPOTrainer (TRL + LadderVLLMGeneration): trained adapters reach the engine."""
    from ladder import grpo
    from ladder.data.loaders import load_split
    from ladder.lora import lora_config
    from ladder.rewards import format_reward

    cfg = grpo.GRPOStageConfig(model=str(tiny_sft), output_dir=str(tmp_path), rollout_backend="vllm", use_lora=True,
                               lora_r=4, per_device_train_batch_size=8, num_generations=4, max_completion_length=16,
                               vllm_max_model_length=128, report_to="none", save_strategy="no")
    trainer = grpo.trainer_class()(model=AutoModelForCausalLM.from_pretrained(tiny_sft), reward_funcs=[format_reward],
                                   args=cfg, train_dataset=load_split(str(tiny_run / "data"), "rl", "train", limit=8),
                                   processing_class=AutoTokenizer.from_pretrained(tiny_sft),
                                   peft_config=lora_config(cfg))
    llm = trainer.vllm_generation.llm
    try:
        model, seqs = trainer.model, sequences(tiny_sft)
        torch.manual_seed(0)
        with torch.no_grad():  # adapters as after some training (B starts at zero: no effect yet)
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.05)
        trainer.vllm_generation.sync_weights()
        gap = max_gap(rollout.sequence_logprobs(llm, seqs), trainer_logprobs(model, seqs))
        with model.disable_adapter():
            without = max_gap(rollout.sequence_logprobs(llm, seqs), trainer_logprobs(model, seqs))
        assert gap < 1e-4 and without > 1e-2
    finally:
        rollout.close_engine(llm)


@pytest.fixture(scope="module")
def engine(tiny_sft):
    llm = rollout.build_engine(str(tiny_sft), max_model_len=128, max_num_seqs=8)
    yield llm
    rollout.close_engine(llm)


@needs_vllm
@pytest.mark.slow
def test_logprobs_match_trainer_after_sync(engine, tiny_sft):
    seqs = sequences(tiny_sft)
    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    assert model.config.tie_word_embeddings  # the case that needs the tied-head repack
    assert max_gap(rollout.sequence_logprobs(engine, seqs), trainer_logprobs(model, seqs)) < 1e-4

    one_step(model, seqs)
    stale = max_gap(rollout.sequence_logprobs(engine, seqs), trainer_logprobs(model, seqs))
    rollout.push_weights(engine, rollout.named_weights(model))
    synced = max_gap(rollout.sequence_logprobs(engine, seqs), trainer_logprobs(model, seqs))
    print(f"max |log-prob gap| vLLM vs trainer: before sync {stale:.2e}, after {synced:.2e}")
    assert stale > 1e-2  # the step really changed the model
    assert synced < 1e-4


@needs_vllm
@pytest.mark.slow
def test_lora_adapters_reach_vllm(engine, tiny_sft):
    seqs = sequences(tiny_sft)
    torch.manual_seed(0)
    model = lora_model(AutoModelForCausalLM.from_pretrained(tiny_sft))
    one_step(model, seqs)  # adapters trained a step; base frozen
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rollout.push_weights(engine, rollout.named_weights(model))
    gap = max_gap(rollout.sequence_logprobs(engine, seqs), trainer_logprobs(model, seqs))
    with model.disable_adapter():
        without = max_gap(rollout.sequence_logprobs(engine, seqs), trainer_logprobs(model, seqs))
    print(f"LoRA: vLLM vs adapted model {gap:.2e}, vs the base without adapters {without:.2e}")
    assert gap < 1e-4 and without > 1e-2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # sync merged into a copy


@needs_vllm
@pytest.mark.slow
def test_server_sync_is_exact(tiny_sft, vllm_server, tmp_path):
    """`ladder vllm-serve` on CPU + sync through disk and /collective_rpc: same exactness as colocate."""
    from trl.generation.vllm_client import VLLMClient

    client = VLLMClient(base_url=f"http://127.0.0.1:{vllm_server}", connection_timeout=400)
    seqs = sequences(tiny_sft, n=4)

    def served():
        out = client.get_sequence_logprobs(seqs, [1] * len(seqs), top_logprobs=1)["actual_logprobs"]
        return [[step[0] for step in row] for row in out]

    model = AutoModelForCausalLM.from_pretrained(tiny_sft)
    one_step(model, seqs)
    assert max_gap(served(), trainer_logprobs(model, seqs)) > 1e-2
    rollout.push_weights_to_server(client.base_url, rollout.named_weights(model), tmp_path / "sync")
    assert max_gap(served(), trainer_logprobs(model, seqs)) < 1e-4
    out = client.generate(seqs[:2], n=3, max_tokens=8, temperature=1.0, logprobs=0)  # what GRPO calls
    assert len(out["completion_ids"]) == 6 and len(out["logprobs"][0]) == len(out["completion_ids"][0])


def test_vllm_serve_command_is_local_fp32_and_syncable(tiny_sft):
    from ladder import vllm_serve

    cfg = vllm_serve.ServeConfig(model=str(tiny_sft), port=8123, max_model_len=128, threads=1)
    argv, env = vllm_serve.command(cfg)
    line = " ".join(argv)
    assert "--host 127.0.0.1" in line and "--port 8123" in line
    assert "--worker-extension-cls ladder.rollout.WorkerExtension" in line
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    if not torch.cuda.is_available():
        assert "--dtype float32" in line and "--enforce-eager" in line
        assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0" and env["OMP_NUM_THREADS"] == "1"
    with pytest.raises(LadderError, match="not an HF checkpoint"):
        vllm_serve.main(["--model", str(tiny_sft / "nope")])


def test_vllm_serve_passes_parallelism_memory_and_extra_flags_but_not_the_sync_ones(tiny_sft):
    """A rollout node with several GPUs needs vLLM's parallelism and memory flags; any other flag passes
    through vllm_args; the flags the weight sync and the log-probs rely on cannot be overridden there."""
    from ladder import vllm_serve
    from ladder.config import load_config

    cfg = load_config(vllm_serve.ServeConfig, ["--model", str(tiny_sft), "--tensor_parallel_size", "2",
                                               "--data_parallel_size", "4", "--gpu_memory_utilization", "0.8",
                                               "--vllm_args", "[--enable-prefix-caching, --quantization, fp8]"])
    line = " ".join(vllm_serve.command(cfg)[0])
    assert "--tensor-parallel-size 2" in line and "--data-parallel-size 4" in line
    assert "--gpu-memory-utilization 0.8" in line and line.endswith("--enable-prefix-caching --quantization fp8")
    plain = " ".join(vllm_serve.command(vllm_serve.ServeConfig(model=str(tiny_sft)))[0])
    assert "parallel-size" not in plain and "--gpu-memory-utilization" not in plain
    for flag in ("--logprobs-mode=raw_logprobs", "--worker-extension-cls", "--port"):
        with pytest.raises(LadderError, match=f"vllm_args: {flag.split('=')[0]} is set by ladder"):
            vllm_serve.ServeConfig(model=str(tiny_sft), vllm_args=[flag, "x"])


def test_rollout_backend_choice(monkeypatch):
    from ladder import grpo

    with pytest.raises(LadderError, match="rollout_backend must be one of"):
        grpo.GRPOStageConfig(rollout_backend="sglang", report_to="none")
    with pytest.raises(LadderError, match="set rollout_backend: vllm"):
        grpo.GRPOStageConfig(use_vllm=True, report_to="none")
    from ladder import online_rl

    monkeypatch.setattr(online_rl, "vllm_available", lambda: False)  # HF generate fallback without vLLM
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = grpo.GRPOStageConfig(rollout_backend="vllm", report_to="none")
    assert cfg.rollout_backend == "hf" and not cfg.use_vllm
    assert any("vLLM is not installed" in str(w.message) for w in caught)
    cfg = grpo.GRPOStageConfig(rollout_backend="hf", report_to="none")
    assert cfg.vllm_importance_sampling_correction == torch.cuda.is_available()
