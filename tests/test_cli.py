import subprocess
import sys

from ladder.cli import COMMANDS, main


def test_help_lists_every_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("data", "tokenizer", "pretrain", "sft", "rm", "ppo", "grpo", "run", "app"):
        assert name in out and name in COMMANDS


def test_unknown_command_exits_2(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_bad_input_is_one_line_error_exit_2():
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "data", "--levels", "[9]"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown level 9" in out.stderr
