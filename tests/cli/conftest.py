"""What the tests of the command line share: a run in this process that returns the exit status, a run as
``python -m imc_cluster``, the argv of a tiny digits ``train`` and the checkpoint of one. (A run in this
process that captures what it prints is the ``run_cli`` fixture of tests/conftest.py, which the photos'
model needs too.)"""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imc_cluster.cli import main as cli

#: a tiny digits run: 64 training and 64 test images, a 4-channel network, 10 prototypes
TINY_DIGITS = shlex.split(
    "--dataset digits --limit_train 64 --limit_test 64 --backbone_width 4 --prototypes 10 --project_dim 8 "
    "--batch_size 32 --warmup 2 --dev cpu"
)


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


def _module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imc_cluster", *argv], capture_output=True, text=True)


def _digits_train_argv(tmp: Path, out: Path, epochs: int, *flags: str) -> list[str]:
    return [
        "train",
        *TINY_DIGITS,
        "--path",
        str(tmp),
        "--epochs",
        str(epochs),
        "--output_dir",
        str(out),
        "--cpt_name",
        "d.cpt",
        *flags,
    ]


@pytest.fixture(scope="session")
def run():
    """``run(argv)``: ``imc-cluster argv`` in this process (what it prints goes to the test's stdout and
    stderr): its exit status."""
    return _run


@pytest.fixture(scope="session")
def run_module():
    """``run_module(*argv)``: ``python -m imc_cluster argv`` with stdout and stderr pipes."""
    return _module


@pytest.fixture(scope="session")
def digits_train_argv():
    """``digits_train_argv(tmp, out, epochs, *flags)``: the argv of a tiny digits ``train``
    (:data:`TINY_DIGITS`) with data in ``tmp``, of ``epochs`` epochs, into the checkpoint ``out/d.cpt``, then
    ``flags``."""
    return _digits_train_argv


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A tiny digits model (:data:`TINY_DIGITS`) after one epoch: 8x8 grey images, width 4, 10 prototypes."""
    folder = tmp_path_factory.mktemp("digits")
    assert _run(_digits_train_argv(folder, folder, 1, "--quiet")) == 0
    return folder / "d.cpt"
