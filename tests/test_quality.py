"""Lint and types are part of the test command, so CI holds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "runner", "tests", "bench"],
        [sys.executable, "-m", "ruff", "format", "--check", "runner", "tests", "bench"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    if shutil.which(command[2]) is None and not _importable(command[2]):
        pytest.skip(f"{command[2]} is not installed")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_the_core_never_imports_click() -> None:
    for path in (REPO / "runner").rglob("*.py"):
        if path.name == "cli.py":
            continue
        assert "import click" not in path.read_text(), path


def test_a_plain_install_ships_every_package_and_data_file() -> None:
    """`pip install .` (not only an editable install) must carry all of runner/."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "runner").rglob("__init__.py")
    }
    assert set(config["packages"]) == packages
    shipped = config["package-data"]["runner"]
    assert "schemas/*.json" in shipped
    assert "templates/*.j2" in shipped
