from ladder.rewards.cli import main


def test_list_shows_builtins_with_docstrings(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "math_accuracy" in out and "gold `answer` column" in out and "countdown_accuracy" in out


def test_check_validates_a_spec(capsys, tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def ones(completions, **kw):\n    return [1.0] * len(completions)\n")
    assert main(["check", f"{f}:ones"]) == 0
    assert "ok" in capsys.readouterr().out
