"""The `ladder` namespace must never shadow the stdlib `platform` or Hugging Face `datasets`."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stdlib_platform_and_hf_datasets_win_from_repo_root():
    code = ("import platform, datasets, ladder.data, ladder.config; "
            "print(platform.__file__); print(datasets.__file__); print(platform.system()); "
            "print(datasets.Dataset.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    plat, ds, system, cls = out.stdout.split()
    assert not plat.startswith(str(ROOT)) and plat.endswith("platform.py")
    assert "site-packages" in ds and not ds.startswith(str(ROOT / "datasets"))
    assert system and cls == "Dataset"


def test_shadowing_folders_have_no_init():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "datasets" / "__init__.py").exists()


def test_every_subpackage_is_listed_in_pyproject():
    """An unlisted subpackage is silently left out of the wheel."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(conf["packages"]), conf["package-dir"]
    assert set(dirs) == listed
    for name, folder in dirs.items():
        for sub in (ROOT / folder).rglob("*.py"):
            rel = sub.parent.relative_to(ROOT / folder)
            if rel.parts and rel.parts[0] not in ("__pycache__",):
                pkg = ".".join([name, *rel.parts])
                assert pkg in listed, f"{pkg} ({sub.parent}) is not listed in pyproject"


def test_stage_modules_run_with_dash_m():
    out = subprocess.run([sys.executable, "-m", "ladder.data.build", "--bogus", "1"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown key 'bogus'" in out.stderr
