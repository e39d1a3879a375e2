from dataclasses import dataclass, field

import pytest

from ladder.config import load_config, option, parse_overrides, to_dict
from ladder.errors import LadderError


@dataclass
class Demo:
    name: str = "x"
    lr: float = 1e-3
    steps: int = 10
    levels: list[int] = field(default_factory=lambda: [1])
    flag: bool = False


def test_yaml_then_command_line_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: base\nlr: 3e-4\nsteps: 5\n")
    cfg = load_config(Demo, ["--config", str(recipe), "--steps", "7", "--levels", "[1, 2]", "--flag"])
    assert cfg == Demo(name="base", lr=3e-4, steps=7, levels=[1, 2], flag=True)
    assert isinstance(cfg.lr, float)  # YAML reads 3e-4 as a string; coerced
    assert to_dict(cfg)["levels"] == [1, 2]


def test_unknown_key_names_key_and_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: a\nstepz: 3\n")
    with pytest.raises(LadderError) as e:
        load_config(Demo, ["--config", str(recipe)])
    msg = str(e.value)
    assert "stepz" in msg and str(recipe) in msg and "did you mean 'steps'" in msg and "\n" not in msg


def test_unknown_override_and_bad_values():
    with pytest.raises(LadderError, match="unknown key 'nope'"):
        load_config(Demo, ["--nope", "1"])
    with pytest.raises(LadderError, match="expected a number"):
        load_config(Demo, ["--lr", "fast"])
    with pytest.raises(LadderError, match="config key 'flag': expected true or false, got 'maybe'"):
        load_config(Demo, ["--flag", "maybe"])
    assert load_config(Demo, ["--flag", "false"]).flag is False
    with pytest.raises(LadderError, match="expected --key value"):
        parse_overrides(["steps", "3"])


def test_missing_and_malformed_recipe(tmp_path):
    with pytest.raises(LadderError, match="recipe file not found"):
        load_config(Demo, ["--config", str(tmp_path / "none.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(LadderError, match="must be a mapping"):
        load_config(Demo, ["--config", str(bad)])


@dataclass
class Texty:
    strategy: str = "steps"
    split: str | None = "test"
    modules: list[str] | str = "all-linear"


def test_command_line_text_stays_text():
    """YAML would read `no` as False and `null` as None: a text field keeps the text."""
    cfg = load_config(Texty, ["--strategy", "no", "--split", "null", "--modules", "[q, v]"])
    assert cfg == Texty(strategy="no", split=None, modules=["q", "v"])


# --- --help ---

@dataclass
class Helped:
    steps: int = 10
    lr: float = field(default=1e-3, metadata={"help": "Step size of the optimizer."})
    tags: list[str] = field(default_factory=lambda: ["a"])
    split: str | None = option("test", "which split to read")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_options_and_exits_0(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        load_config(Helped, ["--config", str(tmp_path / "not-read.yaml"), "--steps", "3", flag])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("  --")] == ["--steps", "--lr", "--tags", "--split"]
    by_name = {ln.split()[0]: ln for ln in lines if ln.startswith("  --")}
    assert by_name["--steps"].split() == ["--steps", "int", "=", "10"]
    assert "--lr float = 0.001" in by_name["--lr"] and by_name["--lr"].endswith("Step size of the optimizer.")
    assert "--tags list[str] = ['a']" in by_name["--tags"]
    assert "--split str | None = 'test'" in by_name["--split"] and by_name["--split"].endswith("which split to read")


# stage -> (an option, text of its help). TRL stages: an inherited TRL/TrainingArguments field with
# metadata help, and one ladder re-declares (its help comes from the field it overrides). PPO runs its own
# loop: only the training options it reads, documented where they are declared.
STAGE_OPTIONS = {
    "sft": [("dataset_text_field", "Name of the column that contains text data in the dataset."),
            ("learning_rate", "The initial learning rate"), ("lora_r", "")],
    "rm": [("center_rewards_coefficient", "Coefficient to incentivize the reward model to output mean-zero rewards"),
           ("learning_rate", "The initial learning rate")],
    "ppo": [("learning_rate", "the initial learning rate"), ("per_device_train_batch_size", "prompts rolled out")],
    "grpo": [("num_generations", "Number of generations to sample."), ("learning_rate", "The initial learning rate")],
    "eval": [("split", "")], "pretrain": [("seq_len", "")], "data": [("levels", "")], "tokenizer": [("vocab_size", "")],
}


def test_help_for_every_stage(capsys):
    """`ladder <stage> --help` used to fail with "unknown key 'help'": every stage lists every field of
    its config, one line each with type and default, ladder's own fields before the inherited ones."""
    import dataclasses
    import importlib
    import re

    from ladder.cli import COMMANDS, main

    for stage, checks in STAGE_OPTIONS.items():
        assert main([stage, "--help"]) == 0, stage
        out = capsys.readouterr().out
        options = [ln.split()[0][2:] for ln in out.splitlines() if ln.startswith("  --")]
        module = importlib.import_module(COMMANDS[stage][0])
        cls = next(v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
                   and v.__module__ == module.__name__ and v.__name__.endswith("Config"))
        assert cls.__name__ in out
        assert sorted(options) == sorted(f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_"))
        for name, help_text in checks:
            line = next(ln for ln in out.splitlines() if ln.startswith(f"  --{name} "))
            default = getattr(cls(), name) if stage in ("eval", "pretrain", "data", "tokenizer") else None
            if default is not None:
                assert f"= {default!r}" in line or f"= {default}" in line, line
            assert help_text in line, (stage, line)
        groups = re.findall(r"^(\w+) \((\w+)\):$", out, re.M)
        packages = [package for package, _ in groups]
        assert packages[0] == "ladder" and packages == sorted(packages, key=lambda p: p != "ladder"), groups
        if stage in ("sft", "rm", "grpo"):
            assert "trl" in packages and packages[-1] == "transformers", groups


def test_every_option_ladder_declares_has_help():
    """Help lives in the field (`option(default, help)`, TRL's metadata convention), so `--help` can say what
    each option does: a ladder field without it fails here. Fields ladder re-declares only to change a TRL
    default keep TRL's help."""
    import dataclasses
    import importlib

    from ladder.cli import COMMANDS
    from ladder.stages import STAGES

    configs = [(s.module, s.config) for s in STAGES] + [("ladder.eval", "EvalConfig"),
                                                         ("ladder.vllm_serve", "ServeConfig"),
                                                         ("ladder.pretrain.gguf", "ImportGGUFConfig"),
                                                         ("ladder.apps.compare", "AppConfig"),
                                                         ("ladder.registry", "RunsConfig")]
    assert {m for m, _ in configs} >= {m for name, (m, _) in COMMANDS.items() if name not in ("run", "rewards")}
    missing = []
    for module, name in configs:
        cls = getattr(importlib.import_module(module), name)
        for f in dataclasses.fields(cls):
            owner = next(k for k in cls.__mro__ if f.name in vars(k).get("__annotations__", {}))
            if f.init and owner.__module__.startswith("ladder") and not _help_along_mro(cls, f.name):
                missing.append(f"{owner.__name__}.{f.name}")
    assert not missing, missing


def _help_along_mro(cls, name) -> bool:
    return any(vars(k).get("__dataclass_fields__", {}).get(name) is not None
               and vars(k)["__dataclass_fields__"][name].metadata.get("help") for k in cls.__mro__)


def test_run_help_prints_usage(capsys):
    from ladder.cli import main

    assert main(["run", "--help"]) == 0
    assert "ladder run recipes/tiny/ladder.yaml" in capsys.readouterr().out
    from ladder import pipeline

    # after a recipe too, and from the module's own entry (`python -m ladder.pipeline RECIPE --help` said
    # "unknown section 'help'")
    assert pipeline.main(["recipes/tiny/ladder.yaml", "--help"]) == 0
    assert "Before the first rung, every section is checked" in capsys.readouterr().out


def test_module_entry_help_names_ladder_not_main():
    """`python -m ladder.eval --help` grouped ladder's options under `__main__ (EvalConfig)`, after nothing
    else; they must read as from the `ladder` command."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ladder.eval", "--help"], capture_output=True, text=True,
                         timeout=120).stdout
    assert "\nladder (EvalConfig):" in out and "__main__" not in out


@dataclass
class Checked:
    steps: int = 1

    def __post_init__(self):
        if self.steps < 1:
            raise LadderError(f"steps must be at least 1, got {self.steps}")


def test_errors_from_values_and_post_init_name_the_recipe_file(tmp_path):
    """A bad value, or a check the config makes itself, still says which file it came from."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 0\n")
    with pytest.raises(LadderError) as e:
        load_config(Checked, ["--config", str(recipe)])
    assert str(e.value) == f"{recipe}: steps must be at least 1, got 0"
    recipe.write_text("lr: fast\n")
    with pytest.raises(LadderError) as e:
        load_config(Demo, ["--config", str(recipe)])
    assert str(e.value) == f"{recipe}: config key 'lr': expected a number, got 'fast'"
