"""Every shipped recipe fills its stage's config: no unknown keys, values of the right type."""

from pathlib import Path

import pytest

from ladder.config import build_config, read_yaml

ROOT = Path(__file__).resolve().parents[1]
STAGE_CONFIGS = {
    "data": ("ladder.data.build", "DataConfig"), "tokenizer": ("ladder.pretrain.tokenizer", "TokenizerConfig"),
    "pretrain": ("ladder.pretrain.train", "PretrainConfig"), "sft": ("ladder.sft", "SFTStageConfig"),
    "rm": ("ladder.rm", "RMStageConfig"), "ppo": ("ladder.ppo", "PPOStageConfig"),
    "grpo": ("ladder.grpo", "GRPOStageConfig"), "dpo": ("ladder.dpo", "DPOStageConfig"),
    "rloo": ("ladder.rloo", "RLOOStageConfig"),
}
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if p.stem in STAGE_CONFIGS)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_fills_its_stage_config(path, monkeypatch):
    import importlib

    module, cls = STAGE_CONFIGS[path.stem]
    config_cls = getattr(importlib.import_module(module), cls)
    data = read_yaml(path)
    if data.get("bf16"):  # GPU recipes: check the keys, not this machine's precision support
        data["bf16"] = False
    cfg = build_config(config_cls, data, str(path))
    assert cfg.output_dir.startswith("runs/")


def test_ladder_recipes_plan_every_rung():
    from ladder.pipeline import plan

    from ladder.pipeline import apply_overrides

    # DPO and RLOO are optional rungs: named on the command line (`make methods`), they join the tiny ladder
    methods = {"dpo.recipe": "recipes/tiny/dpo.yaml", "rloo.recipe": "recipes/tiny/rloo.yaml"}
    for name, overrides, extra, last in (("tiny", {}, [], []), ("tiny", methods, ["dpo"], ["rloo"]),
                                         ("micro", {}, [], [])):
        recipe = apply_overrides(read_yaml(ROOT / "recipes" / name / "ladder.yaml"), overrides)
        steps = plan(recipe, Path("runs") / name)
        assert [s[0].name for s in steps] == ["data", "tokenizer", "pretrain", "sft", "rm", *extra, "ppo", "grpo",
                                              *last]


def test_tools_ladder_starts_from_the_default_base():
    """recipes/tiny/tools.yaml skips tokenizer and pretrain: its SFT keeps the model it names (the default
    run's base) instead of this run's (absent) base; the other parents are this run's, and every section's
    keys check against its stage's config."""
    from ladder.pipeline import check_sections, plan

    recipe = read_yaml(ROOT / "recipes" / "tiny" / "tools.yaml")
    steps = plan(recipe, Path("runs") / "tiny-tools", ROOT / "recipes" / "tiny")
    args = {s[0].name: s[2] for s in steps}
    assert list(args) == ["data", "sft", "grpo"]
    assert args["sft"]["model"] == "runs/tiny/base" and args["sft"]["data"] == "runs/tiny-tools/data"
    assert args["grpo"]["model"] == "runs/tiny-tools/sft" and args["grpo"]["tools"] == ["calculator"]
    check_sections(steps, {"run": "runs/tiny-tools", **recipe["eval"]})
