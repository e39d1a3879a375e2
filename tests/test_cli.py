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


def test_the_installed_ladder_command_exits_with_mains_code():
    """The `ladder` console script is ladder.cli:entry, which leaves through runtime.exit_process (a rank of a
    distributed run must not finalise): its exit code is still main's."""
    run = ("import sys; from importlib.metadata import entry_points; "
           "(ep,) = entry_points(group='console_scripts', name='ladder'); sys.argv[0] = 'ladder'; ep.load()()")
    out = subprocess.run([sys.executable, "-c", run, "fly"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command 'fly'" in out.stderr
    assert subprocess.run([sys.executable, "-c", run, "--help"], capture_output=True, text=True).returncode == 0


# --- torchvision / torchaudio / torchcodec built for another torch (what `pip install -e ".[cpu]"` leaves)

PYPI_AFTER_CPU_INSTALL = {"torch": "2.13.0+cpu", "torchvision": "0.28.0+cu130", "torchaudio": "2.11.1+cu132",
                          "torchcodec": "0.17.0+cu130"}


def test_broken_torch_companions_are_one_line_before_any_stage_loads(monkeypatch, capsys):
    """What a plain pip install leaves (versions as read from the packages' version.py): `ladder` says
    what to run, in one line, exit 2, without importing the stage (which would fail inside TRL)."""
    import importlib

    from ladder import runtime

    monkeypatch.setattr(runtime, "installed_version", PYPI_AFTER_CPU_INSTALL.get)
    monkeypatch.setattr(importlib, "import_module", lambda name: (_ for _ in ()).throw(AssertionError(name)))
    assert main(["sft", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: torchvision 0.28.0+cu130, torchaudio 2.11.1+cu132, ")
    assert err.endswith("run `pip uninstall -y torchvision torchaudio torchcodec`")
    monkeypatch.setenv("LADDER_SKIP_ENV_CHECK", "1")
    assert runtime.check_torch_companions() is None


def test_matching_or_absent_companions_pass(monkeypatch):
    from ladder import runtime

    for versions in ({"torch": "2.13.0+cpu"},  # what `make install` leaves
                     {"torch": "2.13.0+cpu", "torchvision": "0.28.0+cpu", "torchaudio": "2.13.0+cpu"},
                     {"torch": "2.13.0+cu130", "torchvision": "0.28.0+cu130", "torchcodec": "0.17.0+cu130"},
                     {"torch": "2.5.0a0+e000cf0ad9.nv24.10", "torchvision": "0.20.0a0+abc123"},  # source builds
                     {"torchvision": "0.28.0"}):  # no torch at all: nothing to compare with
        assert runtime.check_torch_companions(versions.get) is None, versions
    line = runtime.check_torch_companions({"torch": "2.13.0+cpu", "torchvision": "0.29.0+cpu"}.get)
    assert line.startswith("torchvision 0.29.0+cpu is built for another torch than this one (2.13.0+cpu)")
    assert line.endswith("`pip uninstall -y torchvision`")
    assert runtime.check_torch_companions() is None  # this environment


def test_companion_versions_are_read_from_version_py_without_importing(tmp_path, monkeypatch):
    """PyPI's metadata says 0.28.0; the build tag (+cu130) is only in the package's version.py, which
    imports torchvision's extension on its second line: read as text, never run."""
    import importlib
    import sys

    from ladder import runtime

    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    (pkg / "version.py").write_text("__version__ = '0.28.0+cu130'\nfrom torchvision.extension import _check\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert runtime.installed_version("torchvision") == "0.28.0+cu130"
    assert "torchvision" not in sys.modules
    assert runtime.installed_version("no_such_package_xyz") is None
