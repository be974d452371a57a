"""The distribution installs one import package, `convoflow`, and works outside any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of the sources, so no build/ folder is left in the checkout (nor reused
    # from it, with files that no longer exist in the sources).
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("engine", "adapters", "bots"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    (built,) = out.glob("convoflow-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_the_examples(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"convoflow"}
    assert "convoflow/bots/guessbot.py" in names
    assert "convoflow/adapters/telegram/channel.py" in names
    assert {"convoflow/adapters/web/static/index.html", "convoflow/adapters/web/static/chat.js"} <= set(names)


def test_the_installed_wheel_runs_a_bundled_bot_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    # A fresh venv with the wheel alone; its dependencies come from this test run's environment
    # through a path entry (a .pth file there is not read, so the checkout's own convoflow is not).
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    home = tmp_path / "elsewhere"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    check = subprocess.run([str(python), "-c", "import convoflow; from convoflow import dialog, ask, send_message; "
                            "print(convoflow.__file__)"], cwd=home, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert str(target) in check.stdout and str(ROOT) not in check.stdout
    # guessbot draws a secret number: guessing 1..10 in turn always finds it
    game = subprocess.run([str(target / "bin" / "convoflow"), "run", "guessbot", "--store", "memory://"],
                          input="".join(f"{n}\n" for n in range(1, 11)), cwd=home, env=env,
                          capture_output=True, text=True, timeout=60)
    assert game.returncode == 0, game.stderr
    assert "Guess a number between 1 and 10." in game.stdout
    assert "You got it in " in game.stdout
    assert not (home / "convoflow.db").exists()
