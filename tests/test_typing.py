"""The code's type hints hold: mypy over the `convoflow` package (configured in pyproject.toml).

The repository keeps the package in three folders (engine/, adapters/, bots/) that setuptools maps
into one import package; mypy reads a tree of symlinks laid out as the installed package is."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_view(into: Path) -> Path:
    """`into/convoflow`, laid out as installed: engine/'s files, with adapters/ and bots/ inside."""
    package = into / "convoflow"
    package.mkdir()
    for entry in (ROOT / "engine").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "adapters").symlink_to(ROOT / "adapters")
    (package / "bots").symlink_to(ROOT / "bots")
    return package


def test_mypy_passes(tmp_path: Path) -> None:
    package_view(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "convoflow"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
