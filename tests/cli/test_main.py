"""The train and test commands end to end: on digits (with a resume), on a slice of the CIFAR-10 copy and on
folders of photos; every error of a command-line run reaches the user as one line ``imc-cluster: <message>``
on stderr and exit status 2, never a traceback, while bugs (unexpected exception classes) keep theirs; the
progress bar only on a terminal."""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError
from imc_cluster.cli import commands
from imc_cluster.cli import main as cli
from imc_cluster.cli.commands import estimator_params
from imc_cluster.cli.main import build_parser, main
from imc_cluster.training.trainer import DivergenceError

#: the CIFAR-10 JPEG copy in shared/, beside the repository root
CIFAR_ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar.gz"
#: a tiny network, for the end-to-end runs
TINY_FLAGS = shlex.split("--backbone_width 4 --prototypes 10 --project_dim 8 --warmup 2 --dev cpu --quiet")
#: a 1-epoch run of a tiny network, in well under a second of training on 200 digits
TINY = shlex.split(
    "--epochs 1 --batch_size 64 --backbone_width 4 --prototypes 10 --project_dim 8 --warmup 2 "
    "--limit_train 200 --limit_test 100 --quiet --dev cpu"
)


def printed(argv, capsys):
    assert main(argv) == 0
    return capsys.readouterr().out


# ------------------------------------------------------------------ train and test end to end


def test_train_resume_and_test_on_digits(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--dataset", "DIGITS", "--path", str(tmp_path), "--batch_size", "256", *TINY_FLAGS]
    text = printed(["train", *base, "--epochs", "1", "--output_dir", str(out), "--cpt_name", "d.cpt"], capsys)
    assert "epoch 1/1 | loss" in text and "test ACC" in text and "img/s" in text
    text = printed(
        [
            "train",
            *base,
            "--epochs",
            "2",
            "--output_dir",
            str(out),
            "--cpt_name",
            "d.cpt",
            "--cpt_load_path",
            str(out / "d.cpt"),
        ],
        capsys,
    )
    assert "resuming" in text and "epoch 2/2" in text and "epoch 1/2" not in text
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and {"acc", "nmi", "ari", "swav", "mi"} <= set(history[1])
    straight = tmp_path / "straight"
    straight.mkdir()
    (straight / "history.jsonl").write_text('{"epoch": 7}\n')  # an older run's: a fresh run replaces it
    printed(["train", *base, "--epochs", "2", "--output_dir", str(straight), "--cpt_name", "d.cpt"], capsys)
    history = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    resumed, direct = (IMCSwAVClustering.load(p / "d.cpt") for p in (out, straight))
    for a, b in zip(resumed.model_.state_dict().values(), direct.model_.state_dict().values()):
        assert torch.equal(a, b)
    text = printed(
        ["test", "--dataset", "digits", "--path", str(tmp_path), "--cpt_load_path", str(out / "d.cpt")],
        capsys,
    )
    assert text.startswith("ACC ") and "NMI" in text and "ARI" in text


def test_missing_data_set_is_one_line_naming_the_path(tmp_path, capsys):
    assert main(["train", "--dataset", "c10", "--path", str(tmp_path / "nothing"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imc-cluster: ") and err.count("\n") == 1 and str(tmp_path / "nothing") in err


@pytest.fixture(scope="module")
def cifar_slice(tmp_path_factory):
    """12 training and 4 test JPEGs per class from the shared CIFAR-10 copy, as an ImageFolder tree."""
    if not CIFAR_ARCHIVE.exists():
        pytest.skip("the CIFAR-10 copy is not beside the repository")
    root = tmp_path_factory.mktemp("cifar")
    wanted = {
        f"{split}/{cls}/{i:04d}.jpg"
        for split, n in (("train", 12), ("test", 4))
        for i in range(n)
        for cls in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    }
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        members = [m for m in archive.getmembers() if m.name.lstrip("./") in wanted]
        archive.extractall(root, members=members, filter="data")
    tops = [p for p in root.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 and not (root / "train").exists() else root


def test_train_and_test_on_a_cifar_slice(cifar_slice, tmp_path, capsys):
    out = tmp_path / "c10"
    base = ["--dataset", "folder", "--path", str(cifar_slice), "--size_crops", "28", "18"]
    text = printed(
        [
            "train",
            *base,
            "--epochs",
            "1",
            "--batch_size",
            "60",
            "--output_dir",
            str(out),
            "--cpt_name",
            "c10.cpt",
            *TINY_FLAGS,
        ],
        capsys,
    )
    assert "epoch 1/1" in text
    text = printed(["test", *base, "--cpt_load_path", str(out / "c10.cpt")], capsys)
    assert text.startswith("ACC ")
    assert IMCSwAVClustering.load(out / "c10.cpt").input_shape_ == (3, 32, 32)


def test_speed_and_memory_flags_reach_the_estimator():
    args = build_parser().parse_args(
        shlex.split("train --dataset c10 --compile --precision bfloat16 --activation_checkpointing")
    )
    params = estimator_params(args, 10, (28, 18))
    assert (params["compile"], params["precision"], params["activation_checkpointing"]) == (
        True,
        "bfloat16",
        True,
    )
    defaults = estimator_params(build_parser().parse_args(["train", "--dataset", "c10"]), 10, (28, 18))
    assert (defaults["compile"], defaults["precision"], defaults["activation_checkpointing"]) == (
        False,
        "auto",
        False,
    )


# ------------------------------------------------------------------ folders of photos


def test_train_on_an_unlabelled_folder_of_mixed_sizes(photos_model, photos_clusters):
    checkpoint, text = photos_model
    assert "epoch 1/1 | loss" in text and "ACC" not in text and "nan" not in text
    estimator = IMCSwAVClustering.load(checkpoint)
    assert estimator.input_shape_ == (3, 16, 16) and estimator.n_clusters == photos_clusters
    assert estimator.labels_.shape == (13,) and "acc" not in estimator.history_[-1]


def test_train_leaves_out_an_unreadable_file_with_one_warning_line(
    photos, photos_clusters, tmp_path, run_cli, folder_train_argv
):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    status, _, err = run_cli(
        folder_train_argv(folder, tmp_path / "run", "--image_size", "16", "--n_clusters", photos_clusters)
    )
    assert status == 0, err
    lines = [line for line in err.splitlines() if "image file" in line]  # not the batch size's warning
    assert len(lines) == 1 and lines[0].startswith("imc-cluster: warning: Skipped 1 image file(s) under ")
    assert "sub/broken.png: Cannot decode the image file" in lines[0]
    assert IMCSwAVClustering.load(tmp_path / "run" / "model.cpt").labels_.shape == (13,)


def test_class_folders_default_k_which_n_clusters_overrides_and_a_resume_keeps_k(
    photos_model, photos, photos_clusters, tmp_path, run_cli, folder_train_argv, save_photo
):
    rng = np.random.default_rng(3)
    for name in ("ant", "bee"):
        for index in range(4):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            save_photo(tmp_path / "tree" / name / f"{index}.png", image)
    for flags, expected in (([], 2), (["--n_clusters", "3"], 3)):
        out = tmp_path / f"k{expected}"
        status, text, err = run_cli(folder_train_argv(tmp_path / "tree", out, *flags))
        assert status == 0, err
        assert "test ACC" in text and IMCSwAVClustering.load(out / "model.cpt").n_clusters == expected
    resumed = tmp_path / "resumed"
    status, text, err = run_cli(
        folder_train_argv(
            photos, resumed, "--image_size", "16", "--epochs", "2", "--cpt_load_path", photos_model[0]
        )
    )
    assert status == 0, err
    assert "epoch 2/2" in text and IMCSwAVClustering.load(resumed / "model.cpt").n_clusters == photos_clusters


@pytest.mark.parametrize(
    "size, crops", [(("3", "24"), ("3", "2")), (("1", "24"), ("1", "1")), (("24", "3"), ("3", "2"))]
)
def test_image_sides_of_one_or_three_pixels_are_not_taken_for_channels(
    photos, photos_clusters, tmp_path, size, crops, run_cli, folder_train_argv
):
    status, _, err = run_cli(
        folder_train_argv(
            photos, tmp_path, "--image_size", *size, "--n_clusters", photos_clusters, "--size_crops", *crops
        )
    )
    assert status == 0, err
    assert IMCSwAVClustering.load(tmp_path / "model.cpt").input_shape_ == (3, int(size[0]), int(size[1]))


# ------------------------------------------------------------------ errors in one line


@dataclass
class Setup:
    """What an argv builder gets: a fresh folder, the tiny digits checkpoint, and monkeypatch."""

    tmp: Path
    checkpoint: Path
    monkeypatch: pytest.MonkeyPatch

    def train(self, *flags: str, data: list[str] | None = None) -> list[str]:
        """Tiny ``train`` on the data set flags ``data`` (digits by default) into a fresh output folder,
        then ``flags`` (later flags win)."""
        return [
            "train",
            "--path",
            str(self.tmp),
            *(data or ["--dataset", "digits"]),
            *TINY,
            "--output_dir",
            str(self.tmp / "out"),
            *flags,
        ]

    def test(self, *flags: str) -> list[str]:
        """``test`` of the tiny digits checkpoint, then ``flags`` (later flags win)."""
        return [
            "test",
            "--dataset",
            "digits",
            "--path",
            str(self.tmp),
            "--cpt_load_path",
            str(self.checkpoint),
            "--dev",
            "cpu",
            *flags,
        ]

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
    ("batch_size 1", lambda s: s.train("--batch_size", "1"), ": --batch_size must be an int in the range"),
    ("batch_size 0", lambda s: s.train("--batch_size", "0"), ": --batch_size must be an int in the range"),
    ("epochs 0", lambda s: s.train("--epochs", "0"), ": --epochs must be an int in the range [1, inf)"),
    ("prototypes 1", lambda s: s.train("--prototypes", "1"), ": --prototypes must be an int"),
    ("tau 0", lambda s: s.train("--tau", "0"), ": --tau must be a float in the range (0.0, inf)"),
    ("eps -1", lambda s: s.train("--eps", "-1"), ": --eps must be a float"),
    ("learning_rate 0", lambda s: s.train("--learning_rate", "0"), ": --learning_rate must be a float"),
    ("no large crops", lambda s: s.train("--nmb_crops", "0", "4"), "(flag: --nmb_crops)"),
    (
        "crops larger than the images",
        lambda s: s.train("--size_crops", "40", "18", data=s.folder()),
        "larger than the 32x32 images. (flag: --size_crops)",
    ),
    ("crop scale above 1", lambda s: s.train("--max_scale_crops", "2", "0.4"), "--max_scale_crops"),
    ("hue jitter 0.9", lambda s: s.train("--color_jitter", "1", "1", "1", "0.9"), "color_jitter"),
    ("limit_train 0", lambda s: s.train("--limit_train", "0"), "--limit_train must be a positive number"),
    ("limit_test -3", lambda s: s.test("--limit_test", "-3"), "--limit_test must be a positive number"),
    ("unknown device", lambda s: s.train("--dev", "tpu"), "--dev must be a GPU index"),
    ("train on a missing GPU", lambda s: s.train("--dev", "cuda"), "--dev cuda asks for GPU 0"),
    ("GPU index 3", lambda s: s.train("--dev", "3"), "--dev 3 asks for GPU 3"),
    ("test on a missing GPU", lambda s: s.test("--dev", "cuda"), "--dev cuda asks for GPU 0"),
    (
        "output_dir is a file",
        lambda s: s.train("--output_dir", str(s.file("taken"))),
        "Cannot create --output_dir",
    ),
    (
        "output_dir in a read-only folder",
        lambda s: s.train("--output_dir", str(s.read_only() / "out")),
        "Cannot create --output_dir",
    ),
    ("cpt_name is a folder", checkpoint_folder, "model.cpt is a directory"),
    # the data path is missing too: the checkpoint must be what the message names
    (
        "train from a missing checkpoint",
        lambda s: s.train("--cpt_load_path", str(s.tmp / "none.cpt"), data=missing_folder(s)),
        "none.cpt",
    ),
    (
        "train from a corrupt checkpoint",
        lambda s: s.train("--cpt_load_path", str(s.file("bad.cpt", b"junk")), data=missing_folder(s)),
        "bad.cpt",
    ),
    ("test a missing checkpoint", lambda s: s.test("--cpt_load_path", str(s.tmp / "none.cpt")), "none.cpt"),
    (
        "test a corrupt checkpoint",
        lambda s: s.test("--cpt_load_path", str(s.file("bad.cpt", b"junk"))),
        "bad.cpt",
    ),
    ("test a truncated checkpoint", lambda s: s.test("--cpt_load_path", str(truncated(s))), "cut.cpt"),
    (
        "test on colour images of a grey model",
        lambda s: s.test(*s.folder((10, 10, 3))),
        "images of shape (C, H, W) = (3, 8, 8), but",
    ),
    (
        "test at another --image_size",
        lambda s: s.test(*s.folder((10, 10)), "--image_size", "10"),
        "--image_size 10 (the checkpoint's: 8 8). Leave --image_size out",
    ),
    ("missing data folder", lambda s: s.train(data=missing_folder(s)), "nothing not found"),
    ("folder without images", lambda s: s.train(data=["--dataset", "folder"]), "No image files under"),
    ("subfolder without images", lambda s: s.train(data=empty_folder(s)), "No image files under"),
    ("unreadable image files", lambda s: s.train(data=bad_image(s)), "None of the 2 image files"),
    ("CUDA error (multi-line)", cuda_error, "CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("divergence", divergence, "NaN or infinite"),
]


#: cases that only fail on a machine without a GPU
WITHOUT_GPU = {"train on a missing GPU", "test on a missing GPU", "GPU index 3"}


def _params() -> list:
    """:data:`CASES` as pytest parameters named after their case."""
    no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
    return [
        pytest.param(build, expected, id=name, marks=no_gpu if name in WITHOUT_GPU else ())
        for name, build, expected in CASES
    ]


@pytest.mark.parametrize("build, expected", _params())
def test_error_is_one_line_and_status_2(
    build, expected, tmp_path, digits_checkpoint, monkeypatch, capsys, run
):
    argv = build(Setup(tmp_path, digits_checkpoint, monkeypatch))
    capsys.readouterr()
    status = run(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("imc-cluster: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err


@dataclass
class Photos:
    """What a folder-error argv builder gets: the photos, the checkpoint of their model, the flags of a tiny
    one-epoch run, and ``train(*flags)``, the argv of that run on the photos into a fresh folder."""

    photos: Path
    checkpoint: Path
    run_flags: list[str]
    train: Callable[..., list]


#: (name, argv builder (Photos) -> argv, expected part of the one-line message)
FOLDER_ERRORS = [
    ("train without --n_clusters", lambda p: p.train("--image_size", 16), "--n_clusters K"),
    ("train with --image_size 0", lambda p: p.train("--image_size", 0), "--image_size takes"),
    ("train with three sides", lambda p: p.train("--image_size", 8, 8, 8), "--image_size takes"),
    ("train with --image_size x", lambda p: p.train("--image_size", "x"), "invalid int value"),
    ("train on mixed sizes", lambda p: p.train("--n_clusters", 2), "--image_size"),
    (
        "train on digits with --image_size",
        lambda p: ["train", "--dataset", "digits", *p.run_flags, "--image_size", 8],
        "applies to 'folder' only",
    ),
    (
        "test on an unlabelled folder",
        lambda p: [
            "test",
            "--dataset",
            "folder",
            "--path",
            p.photos,
            "--image_size",
            16,
            "--cpt_load_path",
            p.checkpoint,
            "--dev",
            "cpu",
        ],
        "no labels to score",
    ),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=n) for n, b, e in FOLDER_ERRORS])
def test_folder_errors_are_one_line_and_status_2(
    build, expected, photos_model, photos, photos_run, tmp_path, run_cli, folder_train_argv
):
    setup = Photos(
        photos,
        photos_model[0],
        photos_run,
        lambda *flags: folder_train_argv(photos, tmp_path / "out", *flags),
    )
    status, _, err = run_cli(build(setup))
    assert status == 2, err
    assert err.startswith("imc-cluster: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err


def test_interrupt_is_one_line_and_status_130(tmp_path, monkeypatch, capsys, run):
    setup = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch)
    setup.fail(commands, "load_dataset", KeyboardInterrupt())
    assert run(setup.train()) == 130
    assert capsys.readouterr().err == "imc-cluster: interrupted\n"


@pytest.mark.parametrize("bug", [AttributeError("a typo"), KeyError("key"), NotImplementedError("todo")])
def test_bugs_keep_their_traceback(bug, tmp_path, monkeypatch, run):
    setup = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch)
    setup.fail(commands, "load_dataset", bug)
    with pytest.raises(type(bug)):
        run(setup.train())


def test_module_entry_point_exits_2_with_one_line(tmp_path, monkeypatch, run_module):
    argv = Setup(tmp_path, tmp_path / "unused.cpt", monkeypatch).train("--batch_size", "1")
    result = run_module(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith("imc-cluster: ") and result.stderr.count("\n") == 1, result.stderr
    assert "--batch_size must be" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ the progress bar


def test_no_progress_bar_when_stderr_is_a_pipe(tmp_path, run_module, digits_train_argv):
    result = run_module(*digits_train_argv(tmp_path, tmp_path / "out", 1))  # no --quiet
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1 |" in result.stdout
    assert "IMC-SwAV" not in result.stderr and "\r" not in result.stderr and "step/s" not in result.stderr


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys, run, digits_train_argv):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert run(digits_train_argv(tmp_path, tmp_path / "bar", 1)) == 0
    assert "IMC-SwAV" in sys.stderr.getvalue() and "epoch 1/1 |" in capsys.readouterr().out


def test_verbose_follows_the_terminal_and_quiet(monkeypatch):
    def verbose(*flags: str) -> int:
        args = cli.parse_args(["train", "--dataset", "digits", *flags])
        return cli.estimator_params(args, 10, (6, 4))["verbose"]

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert (verbose(), verbose("--quiet")) == (1, 0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert (verbose(), verbose("--quiet")) == (0, 0)


# ------------------------------------------------------------------ messages in the command line's terms


@pytest.mark.parametrize(
    "message, shown",
    [
        (
            "The 'temperature' parameter of IMCSwAVClustering must be a float. Got 0 instead.",
            "--tau must be a float. Got 0 instead.",
        ),
        (
            "n_samples=5 should be >= n_clusters=10 (and >= 2).",
            "n_samples=5 should be >= --n_clusters 10 (and >= 2).",
        ),
        (
            "warmup_updates=600 exceeds the run; lower warmup_updates.",
            "--warmup 600 exceeds the run; lower --warmup.",
        ),
        ("backbone='mlp' takes plain feature vectors", "--model_type 'mlp' takes plain feature vectors"),
        ("image_size applies to 'folder' only", "--image_size applies to 'folder' only"),
        (
            "max_time must be positive; cache_dir is a file",
            "--max_time must be positive; --cache_dir is a file",
        ),
        (
            "n_large_crops + n_small_crops must be at least 2",
            "n_large_crops + n_small_crops must be at least 2 (flag: --nmb_crops)",
        ),
        ("The 'betas' parameter of IMCSwAVClustering must be", "'betas' must be"),  # no flag
        ("CUDA device-side assert in /runs/batch_size/x", "CUDA device-side assert in /runs/batch_size/x"),
        ("--epochs 3 and epochs", "--epochs 3 and epochs"),
    ],
)
def test_messages_name_flags_not_parameters(message, shown):
    assert cli.with_flags(message) == shown


def test_run_errors_cover_checkpoints_and_divergence():
    assert issubclass(CheckpointError, cli.RUN_ERRORS) and issubclass(DivergenceError, cli.RUN_ERRORS)
    assert not issubclass(NotImplementedError, cli.RUN_ERRORS) or NotImplementedError in cli.BUGS


def test_the_commands_are_still_names_of_main():
    assert (cli.train, cli.test, cli.predict, cli.estimator_params) == (
        commands.train,
        commands.test,
        commands.predict,
        commands.estimator_params,
    )
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cli.nothing  # noqa: B018
