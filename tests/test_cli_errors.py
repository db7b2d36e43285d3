"""Every error of a command-line run reaches the user as one line ``imc-cluster: <message>`` on stderr and
exit status 2, never a traceback; bugs (unexpected exception classes) keep theirs."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from imc_cluster import IMCSwAVClustering, cli
from imc_cluster.training import DivergenceError

#: a 1-epoch run of a tiny network, in well under a second of training on 200 digits
TINY = ["--epochs", "1", "--batch_size", "64", "--backbone_width", "4", "--prototypes", "10",
        "--project_dim", "8", "--warmup", "2", "--limit_train", "200", "--limit_test", "100", "--quiet",
        "--dev", "cpu"]


@dataclass
class Setup:
    """What an argv builder gets: a fresh folder, the tiny digits checkpoint, and monkeypatch."""

    tmp: Path
    checkpoint: Path
    monkeypatch: pytest.MonkeyPatch

    def train(self, *flags: str, data: list[str] | None = None) -> list[str]:
        """Tiny ``train`` on the data set flags ``data`` (digits by default) into a fresh output folder,
        then ``flags`` (later flags win)."""
        return ["train", "--path", str(self.tmp), *(data or ["--dataset", "digits"]), *TINY,
                "--output_dir", str(self.tmp / "out"), *flags]

    def test(self, *flags: str) -> list[str]:
        """``test`` of the tiny digits checkpoint, then ``flags`` (later flags win)."""
        return ["test", "--dataset", "digits", "--path", str(self.tmp), "--cpt_load_path",
                str(self.checkpoint), "--dev", "cpu", *flags]

    def folder(self, shape: tuple[int, ...] = (32, 32, 3), per_class: int = 4) -> list[str]:
        """An ImageFolder tree of two classes of random ``shape`` PNGs, as ``--dataset folder`` flags."""
        root = self.tmp / "images"
        rng = np.random.default_rng(0)
        for name in ("a", "b"):
            (root / name).mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                image = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(image.squeeze()).save(root / name / f"{index}.png")
        return ["--dataset", "folder", "--path", str(root)]

    def read_only(self) -> Path:
        """A folder in which nothing can be created; where permissions do not bind (root), its ``mkdir``
        fails as the kernel fails it for other users."""
        folder = self.tmp / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            mkdir = os.mkdir

            def denied(path, *args, **kwargs):
                if Path(path).parent == folder:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return mkdir(path, *args, **kwargs)

            self.monkeypatch.setattr(os, "mkdir", denied)
        return folder

    def file(self, name: str, content: bytes = b"") -> Path:
        """A file ``name`` holding ``content``."""
        path = self.tmp / name
        path.write_bytes(content)
        return path

    def fail(self, target, name: str, error: BaseException) -> None:
        """Make ``target.name`` raise ``error``."""
        def raising(*args, **kwargs):
            raise error

        self.monkeypatch.setattr(target, name, raising)


def missing_folder(setup: Setup) -> list[str]:
    """``--dataset folder`` on a path that does not exist."""
    return ["--dataset", "folder", "--path", str(setup.tmp / "nothing")]


def bad_image(setup: Setup) -> list[str]:
    """A folder whose image files are none of them images (one that is not is only a warning)."""
    (setup.tmp / "images").mkdir()
    for name in ("a.png", "b.jpg"):
        setup.file(f"images/{name}", b"not an image at all")
    return ["--dataset", "folder", "--path", str(setup.tmp / "images"), "--n_clusters", "2"]


def empty_folder(setup: Setup) -> list[str]:
    """A folder whose one subfolder holds no image."""
    (setup.tmp / "images" / "a").mkdir(parents=True)
    return ["--dataset", "folder", "--path", str(setup.tmp / "images")]


def checkpoint_folder(setup: Setup) -> list[str]:
    """``train`` whose ``--cpt_name`` in ``--output_dir`` is a folder."""
    (setup.tmp / "out" / "model.cpt").mkdir(parents=True)
    return setup.train("--cpt_name", "model.cpt")


def resume_with_the_default_width(setup: Setup) -> list[str]:
    """Resume the width-4 checkpoint without ``--backbone_width`` (the digits default is 16)."""
    argv = setup.train("--cpt_load_path", str(setup.checkpoint))
    at = argv.index("--backbone_width")
    return argv[:at] + argv[at + 2:]


def truncated(setup: Setup) -> Path:
    """The first half of the tiny digits checkpoint."""
    content = setup.checkpoint.read_bytes()
    return setup.file("cut.cpt", content[: len(content) // 2])


def cuda_error(setup: Setup) -> list[str]:
    """``train`` whose fit fails as CUDA does, with a multi-line message."""
    message = "CUDA out of memory. Tried to allocate 2.00 GiB\nCUDA kernel errors might be reported later"
    setup.fail(IMCSwAVClustering, "fit", torch.cuda.OutOfMemoryError(message))
    return setup.train()


def divergence(setup: Setup) -> list[str]:
    """``train`` whose fit diverges."""
    error = DivergenceError("The training loss became NaN or infinite at epoch 1.")
    setup.fail(IMCSwAVClustering, "fit", error)
    return setup.train()


#: (name, argv builder, expected part of the message)
CASES: list[tuple[str, Callable[[Setup], list[str]], str]] = [
    ("batch_size 1", lambda s: s.train("--batch_size", "1"), "'batch_size'"),
    ("batch_size 0", lambda s: s.train("--batch_size", "0"), "'batch_size'"),
    ("epochs 0", lambda s: s.train("--epochs", "0"), "(flag: --epochs)"),
    ("prototypes 1", lambda s: s.train("--prototypes", "1"), "(flag: --prototypes)"),
    ("tau 0", lambda s: s.train("--tau", "0"), "(flag: --tau)"),
    ("eps -1", lambda s: s.train("--eps", "-1"), "(flag: --eps)"),
    ("learning_rate 0", lambda s: s.train("--learning_rate", "0"), "'learning_rate'"),
    ("no large crops", lambda s: s.train("--nmb_crops", "0", "4"), "(flag: --nmb_crops)"),
    ("crops larger than the images", lambda s: s.train("--size_crops", "40", "18", data=s.folder()),
     "larger than the 32x32 images. (flag: --size_crops)"),
    ("crop scale above 1", lambda s: s.train("--max_scale_crops", "2", "0.4"), "--max_scale_crops"),
    ("hue jitter 0.9", lambda s: s.train("--color_jitter", "1", "1", "1", "0.9"), "color_jitter"),
    ("limit_train 0", lambda s: s.train("--limit_train", "0"), "--limit_train must be a positive number"),
    ("limit_test -3", lambda s: s.test("--limit_test", "-3"), "--limit_test must be a positive number"),
    ("unknown device", lambda s: s.train("--dev", "tpu"), "--dev must be a GPU index"),
    ("train on a missing GPU", lambda s: s.train("--dev", "cuda"), "--dev cuda asks for GPU 0"),
    ("GPU index 3", lambda s: s.train("--dev", "3"), "--dev 3 asks for GPU 3"),
    ("test on a missing GPU", lambda s: s.test("--dev", "cuda"), "--dev cuda asks for GPU 0"),
    ("output_dir is a file", lambda s: s.train("--output_dir", str(s.file("taken"))),
     "Cannot create --output_dir"),
    ("output_dir in a read-only folder", lambda s: s.train("--output_dir", str(s.read_only() / "out")),
     "Cannot create --output_dir"),
    ("cpt_name is a folder", checkpoint_folder, "model.cpt is a directory"),
    # the data path is missing too: the checkpoint must be what the message names
    ("train from a missing checkpoint",
     lambda s: s.train("--cpt_load_path", str(s.tmp / "none.cpt"), data=missing_folder(s)), "none.cpt"),
    ("train from a corrupt checkpoint",
     lambda s: s.train("--cpt_load_path", str(s.file("bad.cpt", b"junk")), data=missing_folder(s)),
     "bad.cpt"),
    ("test a missing checkpoint", lambda s: s.test("--cpt_load_path", str(s.tmp / "none.cpt")), "none.cpt"),
    ("test a corrupt checkpoint", lambda s: s.test("--cpt_load_path", str(s.file("bad.cpt", b"junk"))),
     "bad.cpt"),
    ("test a truncated checkpoint", lambda s: s.test("--cpt_load_path", str(truncated(s))), "cut.cpt"),
    ("test on images of another size", lambda s: s.test(*s.folder((10, 10))), "fitted on (1, 8, 8)"),
    ("resume another architecture", resume_with_the_default_width, "--backbone_width 4, not 16"),
    ("missing data folder", lambda s: s.train(data=missing_folder(s)), "nothing not found"),
    ("folder without images", lambda s: s.train(data=["--dataset", "folder"]), "No image files under"),
    ("subfolder without images", lambda s: s.train(data=empty_folder(s)), "No image files under"),
    ("unreadable image files", lambda s: s.train(data=bad_image(s)), "None of the 2 image files"),
    ("CUDA error (multi-line)", cuda_error, "CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("divergence", divergence, "NaN or infinite"),
]
#: cases that only fail on a machine without a GPU
WITHOUT_GPU = {"train on a missing GPU", "test on a missing GPU", "GPU index 3"}


def run(argv: list[str]) -> int:
    """``imc-cluster argv`` in this process: its exit status."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny digits model after one epoch."""
    folder = tmp_path_factory.mktemp("digits")
    argv = ["train", "--dataset", "digits", *TINY, "--path", str(folder), "--output_dir", str(folder),
            "--cpt_name", "d.cpt"]
    assert run(argv) == 0
    return folder / "d.cpt"


def _params() -> list:
    """:data:`CASES` as pytest parameters named after their case."""
    no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
    return [pytest.param(build, expected, id=name, marks=no_gpu if name in WITHOUT_GPU else ())
            for name, build, expected in CASES]


@pytest.mark.parametrize("build, expected", _params())
def test_error_is_one_line_and_status_2(build, expected, tmp_path, checkpoint, monkeypatch, capsys):
    argv = build(Setup(tmp_path, checkpoint, monkeypatch))
    capsys.readouterr()
    status = run(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("imc-cluster: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, expected", [
    (["train", "--dataset", "digits", "--batch_size", "many"], "invalid int value: 'many'"),
    (["train", "--dataset", "nope"], "invalid choice: 'nope'"),
    (["test", "--dataset", "digits", "--cpt_load_path", "m.cpt", "--epochs", "3"], "unrecognized arguments"),
    (["bogus"], "invalid choice: 'bogus'"),
    ([], "required"),
])
def test_usage_errors_are_one_line_too(capsys, argv, expected):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("imc-cluster: ") and err.count("\n") == 1 and expected in err and "--help" in err, err


def test_interrupt_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    setup = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch)
    setup.fail(cli, "load_dataset", KeyboardInterrupt())
    assert run(setup.train()) == 130
    assert capsys.readouterr().err == "imc-cluster: interrupted\n"


@pytest.mark.parametrize("bug", [AttributeError("a typo"), KeyError("key"), NotImplementedError("todo")])
def test_bugs_keep_their_traceback(bug, tmp_path, monkeypatch):
    setup = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch)
    setup.fail(cli, "load_dataset", bug)
    with pytest.raises(type(bug)):
        run(setup.train())


def test_module_entry_point_exits_2_with_one_line(tmp_path, monkeypatch):
    argv = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch).train("--batch_size", "1")
    result = subprocess.run([sys.executable, "-m", "imc_cluster", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("imc-cluster: ") and result.stderr.count("\n") == 1, result.stderr
    assert "'batch_size'" in result.stderr and "Traceback" not in result.stderr
