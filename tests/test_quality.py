"""The strict tools configured in pyproject.toml stay clean: ruff (lint and format) and mypy.

They run here so that `pytest` (and so CI) fails on a lint or type regression, not only on a
behaviour one. Skipped where the tools or the sources are not at hand (an installed wheel).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").exists() or not (ROOT / "bulk_attach").is_dir(),
    reason="needs the source tree",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_ruff_lint_is_clean() -> None:
    result = _run(_tool("ruff"), "check", "--output-format", "concise", "bulk_attach", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run(_tool("ruff"), "format", "--check", "bulk_attach", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
