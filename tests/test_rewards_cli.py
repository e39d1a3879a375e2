import subprocess
import sys

import pytest

from ladder.errors import LadderError
from ladder.rewards.cli import main


def test_list_shows_every_builtin_with_its_summary(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("math_accuracy", "countdown_accuracy", "code_accuracy", "format_reward", "length_penalty"):
        assert name in out
    assert "gold `answer` column" in out and "file.py:function" in out
    # a summary that runs over two lines of its docstring is shown whole, not cut mid-sentence
    assert "counting all the model wrote (with tools: every assistant turn, not the tools' output)." in out
    assert "but calling less, which is what it asks for." in out


def test_check_validates_a_spec(capsys, tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def ones(completions, **kw):\n    return [1.0] * len(completions)\n")
    assert main(["check", f"{f}:ones"]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["check", "math_accuracy"]) == 0
    assert "[1.0, None, 0.0, None]" in capsys.readouterr().out


def test_check_reports_a_broken_reward_in_one_line(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("def r(completions, **kw):\n    return [float('nan')] * len(completions)\n")
    with pytest.raises(LadderError, match="not finite"):
        main(["check", f"{f}:r"])
    with pytest.raises(LadderError, match="usage"):
        main(["frobnicate"])


def test_runs_as_a_module_and_through_ladder():
    for cmd in ([sys.executable, "-m", "ladder.rewards.cli", "list"], [sys.executable, "-m", "ladder.cli", "rewards"]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "math_accuracy" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "ladder.cli", "rewards", "check", "nope"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: reward 'nope': unknown built-in")
