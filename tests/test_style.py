"""Lint and format: ruff, with the rule set written in pyproject.toml, over the package, the tests and the
benchmarks (``ruff check`` and ``ruff format --check``)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["imc_cluster", "tests", "benchmarks"]


def _ruff(*arguments: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is missing: install the test extra (pip install -e '.[test]').")
    return subprocess.run([ruff, *arguments, *SOURCES], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_is_clean():
    result = _ruff("check", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = _ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
