from dataclasses import dataclass, field

import pytest

from ladder.config import load_config, parse_overrides, to_dict
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
