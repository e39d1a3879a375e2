"""The layers only look down: core <- components <- stages <- front ends, and no stage imports another.

Every `ladder...` import in the source is read from the syntax tree (imports inside functions too), so
a lazy import cannot hide a dependency. A module missing from the tables below fails the test: a new
file has to say which layer it is in.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"platform": "ladder", "rewards": "ladder.rewards", "datasets": "ladder.data",
            "pretrain": "ladder.pretrain", "apps": "ladder.apps"}

CORE = {"ladder.errors", "ladder.config", "ladder.manifest", "ladder.checkpoint", "ladder.runtime", "ladder.precision",
        "ladder.stages"}
COMPONENTS = {"ladder.models", "ladder.distributed", "ladder.evaluation", "ladder.generation", "ladder.rollout",
              "ladder.samplers", "ladder.ppo_math", "ladder.lora", "ladder.report", "ladder.online_rl", "ladder.pretrain",
              "ladder.pretrain.model", "ladder.data", "ladder.tools", "ladder.padding", "ladder.attention",
              "ladder.rewards"}  # ladder.data.* and ladder.rewards.* (but their CLIs, below)
STAGES = {"ladder.sft", "ladder.rm", "ladder.dpo", "ladder.ppo", "ladder.grpo", "ladder.rloo", "ladder.eval",
          "ladder.probe", "ladder.data.build", "ladder.pretrain.tokenizer", "ladder.pretrain.train",
          "ladder.pretrain.gguf", "ladder.vllm_serve"}
# `python -m ladder.pretrain` is an entry point: it runs the pretraining stage
FRONT_ENDS = {"ladder.cli", "ladder.pipeline", "ladder.registry", "ladder.apps", "ladder.rewards.cli",
              "ladder.pretrain.__main__"}


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [PACKAGES[folder], *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> str:
    for label, names in (("stage", STAGES), ("front end", FRONT_ENDS), ("core", CORE), ("component", COMPONENTS)):
        if name in names or any(name.startswith(n + ".") for n in names if n in ("ladder.apps", "ladder.data",
                                                                                  "ladder.rewards")):
            return label
    raise AssertionError(f"{name}: not in any layer of tests/test_layers.py")


def ladder_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ladder")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ladder"):
            # `from ladder import checkpoint` imports the module ladder.checkpoint
            found |= {f"{node.module}.{a.name}" if node.module in PACKAGES.values() else node.module
                      for a in node.names}
    return found


def resolve(name: str, modules: set[str]) -> str | None:
    """The module an imported name lives in (`ladder.rewards.math_accuracy` -> `ladder.rewards`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    files = [p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): {m for n in ladder_imports(p) if (m := resolve(n, modules)) and m != module_name(p)}
            for p in files}


ALLOWED = {"core": {"core"}, "component": {"core", "component"}, "stage": {"core", "component"},
           "front end": {"core", "component", "stage", "front end"}}


def test_every_module_has_a_layer_and_imports_only_below_it():
    wrong = [f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in sorted(graph().items()) for d in sorted(deps)
             if layer(d) not in ALLOWED[layer(m)]]
    assert not wrong, "\n".join(wrong)


def test_no_stage_imports_another_stage():
    wrong = [f"{m} imports {d}" for m, deps in graph().items() if layer(m) == "stage"
             for d in deps if layer(d) == "stage"]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_lazy_imports(tmp_path):
    """The reader finds an import inside a function, so the two tests above can fail."""
    f = tmp_path / "x.py"
    f.write_text("def main():\n    from ladder.sft import load_tokenizer\n    import ladder.rm\n")
    assert ladder_imports(f) == {"ladder.sft", "ladder.rm"}
