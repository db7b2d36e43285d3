"""The ``imc-cluster`` command line: ``train`` and ``test`` with the published IMC-SwAV flags; ``predict``.

    imc-cluster train --dataset C10 --path ./dataset --size_crops 28 18 --output_dir ./c10 --cpt_name c10.cpt
    imc-cluster test  --dataset c10 --path ./dataset --size_crops 28 18 --cpt_load_path ./c10/c10.cpt
    imc-cluster train --dataset folder --path ./photos --n_clusters 20 --image_size 64 --output_dir ./run
    imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters

Both run through :class:`~imc_cluster.IMCSwAVClustering`: ``train`` maps the flags onto its parameters,
fits on the training split with the test split as ``eval_set``, prints one line per epoch, writes the
checkpoint atomically after every epoch and appends every epoch's record to ``history.jsonl`` (and to
TensorBoard when it is installed). ``--cpt_load_path`` resumes a checkpoint with ``warm_start``. Unlabelled
folders need ``--n_clusters`` and get no score. ``predict`` is in :mod:`~imc_cluster.cli.predict`.

``test --json FILE`` also writes the scores as JSON. The parser is in :mod:`~imc_cluster.cli.parser`.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the command joins the process group first and trains on every
process (:mod:`~imc_cluster.training.distributed`); rank 0 alone prints and writes, and an error names its
rank.

An error of the run (a bad flag value, a missing or unreadable file or checkpoint, a diverged fit, a CUDA
error) ends the command with one line ``imc-cluster: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from imc_cluster.augmentation.crop_sizes import CropSize
from imc_cluster.checkpoints.files import CheckpointError
from imc_cluster.cli import predict as cli_predict
from imc_cluster.cli.output import EpochLog, check_json_path, write_json
from imc_cluster.cli.parser import PARAM_FLAGS, PRESETS, build_parser, flag_params, parse_args
from imc_cluster.data.datasets import ImageSet, load_dataset
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.estimator.params import ARCHITECTURE_PARAMS
from imc_cluster.metrics import evaluate_clustering
from imc_cluster.prediction.folder import FolderPrediction
from imc_cluster.training.distributed import (
    current_world,
    first_on_each_node,
    init_from_environment,
    is_main,
    leave,
)
from imc_cluster.training.trainer import DivergenceError

__all__ = [
    "PRESETS",
    "PARAM_FLAGS",
    "RUN_ERRORS",
    "main",
    "build_parser",
    "parse_args",
    "estimator_params",
    "train",
    "test",
    "predict",
]

#: errors of a run rather than of the program, which ``main`` reports in one line with exit status 2: bad
#: values and checkpoints (a CheckpointError is a ValueError), files, a diverged fit, and torch's runtime
#: errors (CUDA)
RUN_ERRORS = (ValueError, TypeError, OSError, CheckpointError, DivergenceError, RuntimeError)
#: RuntimeError subclasses that are bugs: they keep their traceback
BUGS = (NotImplementedError, RecursionError)


def _device(dev: str | None) -> str:
    """The estimator's ``device`` for ``--dev``; a GPU that CUDA does not see is an error, also where the
    estimator would fall back to the CPU (loading a checkpoint)."""
    if dev is None or dev in ("auto", "cpu"):
        return dev or "auto"
    name = f"cuda:{dev}" if dev.isdigit() else dev
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"--dev must be a GPU index, 'cuda', 'cuda:N', 'cpu' or 'auto', got {dev!r}.")
    index = int(name[5:] or 0)
    visible = torch.cuda.device_count()
    if index >= visible:
        raise ValueError(f"--dev {dev} asks for GPU {index}, but CUDA sees {visible} GPU(s) on this machine.")
    return name


def _check_flags(args) -> None:
    """Reject bad values of the flags that the command line interprets itself, before any file is read."""
    if current_world() is not None and args.dev not in (None, "auto", "cpu", "cuda"):
        raise ValueError(
            f"--dev {args.dev} under torchrun: every rank trains on the GPU of its LOCAL_RANK; "
            "leave --dev out, or give --dev cpu for CPU processes (gloo)."
        )
    _device(args.dev)
    for flag in ("limit_train", "limit_test"):
        limit = getattr(args, flag, None)  # test has no --limit_train
        if limit is not None and limit < 1:
            raise ValueError(f"--{flag} must be a positive number of images, got {limit}.")
    size = args.image_size
    if size is not None and (len(size) > 2 or min(size) < 1):
        raise ValueError(f"--image_size takes one side S or two sides H W, positive; got {size}.")


def _load(args) -> ImageSet:
    """The data set of ``--dataset``, ``--path`` and ``--image_size`` (one side, or H W). Under torchrun the
    first process of every node loads it first (downloading, extracting or caching it), then the others."""
    size = args.image_size
    with first_on_each_node():
        return load_dataset(args.dataset, args.path, image_size=size[0] if size and len(size) == 1 else size)


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int):
    """A random subset of ``limit`` images (all without a limit), as a channels-first view ``(N, C, H, W)``:
    unambiguous for the estimator even where a side of the images is 1 or 3 pixels."""
    if limit is not None and limit < len(images):
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
        images, labels = images[keep], labels[keep]
    return images.transpose(0, 3, 1, 2), labels


def _test_split(data: ImageSet, args) -> tuple[np.ndarray, np.ndarray]:
    return _subset(data.test_images, data.test_labels, args.limit_test, seed=1)


def _verbose(args) -> int:
    """The estimator's ``verbose``: a progress bar only on a terminal's stderr, and not with ``--quiet``."""
    return 0 if args.quiet or not sys.stderr.isatty() else 1


def estimator_params(
    args,
    n_clusters: int,
    crop_sizes: tuple[CropSize, CropSize],
    checkpoint: Path | None = None,
    normalization=None,
) -> dict:
    """:class:`IMCSwAVClustering` parameters for parsed ``train`` flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``train`` arguments.
    n_clusters : int
        The number of clusters (``--n_clusters``, else the data set's number of classes).
    crop_sizes : (int or (int, int), int or (int, int))
        The data set's default crop sizes (:attr:`ImageSet.crop_sizes`), used unless ``--size_crops``
        is given.
    checkpoint : Path, default=None
        Where the per-epoch checkpoint goes.
    normalization : (tuple of float, tuple of float), default=None
        The data set's published (mean, std) (:attr:`ImageSet.normalization`); None normalises with the
        training images' statistics.
    """
    large, small = args.size_crops or crop_sizes
    return {
        **flag_params(args),
        "n_clusters": n_clusters,
        "large_crop_size": large,
        "small_crop_size": small,
        "checkpoint_path": None if checkpoint is None else str(checkpoint),
        "device": _device(args.dev),
        "random_state": args.seed,
        "verbose": _verbose(args),
        "normalization": normalization,
    }


def _check_architecture(estimator: IMCSwAVClustering, params: dict, path: str) -> None:
    """Refuse to resume a checkpoint whose network differs from the one the flags describe."""

    def resolved(values: dict) -> dict:  # "auto" is ResNet-18 on images
        return {**values, "backbone": "resnet18" if values["backbone"] == "auto" else values["backbone"]}

    saved, params = resolved(estimator.get_params()), resolved(params)
    labels = {**PARAM_FLAGS, "n_clusters": "--n_clusters (default: the classes of --dataset)"}
    differences = [
        f"{labels.get(name, '--' + name)} {saved[name]}, not {params[name]}"
        for name in ARCHITECTURE_PARAMS
        if name in params and saved[name] != params[name]
    ]
    if differences:
        raise ValueError(
            f"{path} holds another network than the flags describe: it was trained with "
            f"{'; '.join(differences)}. Resume with the flags it was trained with."
        )


def _make_output_dir(path: Path) -> None:
    """Create ``--output_dir``; an OSError names the flag."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create --output_dir {path}: {error.strerror or error}.") from error


def _n_clusters(args, data: ImageSet, resumed: IMCSwAVClustering | None) -> int:
    """``--n_clusters``, else the classes of the data set, else (unlabelled) the resumed checkpoint's."""
    if args.n_clusters is None and not data.n_classes and resumed is None:
        raise ValueError(
            f"{args.path} holds no class folders (unlabelled images): give the number of "
            "clusters with --n_clusters K."
        )
    return args.n_clusters if args.n_clusters is not None else data.n_classes or resumed.n_clusters


def train(args, data: ImageSet | None = None) -> IMCSwAVClustering:
    """The ``train`` command: fit (or resume) and report every epoch; ``data`` is the data set when the
    caller has already loaded it. Unlabelled data train without evaluation."""
    _check_flags(args)
    resumed = None
    if args.cpt_load_path:
        resumed = IMCSwAVClustering.load(args.cpt_load_path, device=_device(args.dev))
    data = data if data is not None else _load(args)
    output_dir = Path(args.output_dir)
    checkpoint = output_dir / args.cpt_name
    params = estimator_params(
        args, _n_clusters(args, data, resumed), data.crop_sizes, checkpoint, data.normalization
    )
    if resumed is not None:
        _check_architecture(resumed, params, args.cpt_load_path)
        estimator = resumed
        estimator.set_params(
            max_epochs=args.epochs,
            checkpoint_path=str(checkpoint),
            warm_start=True,
            verbose=params["verbose"],
        )
        _say(f"resuming {args.cpt_load_path} at epoch {estimator.n_iter_} of {args.epochs}")
    else:
        estimator = IMCSwAVClustering(**params)
    train_images, train_labels = _subset(data.train_images, data.train_labels, args.limit_train, seed=0)
    test_images, test_labels = _test_split(data, args)
    _make_output_dir(output_dir)
    labelled = train_labels >= 0  # STL-10: the head trains on labelled images only
    eval_set = (test_images, test_labels) if (test_labels >= 0).all() else None
    estimator.fit(
        train_images,
        eval_set=eval_set,
        callbacks=[EpochLog(output_dir, args.epochs)],
        head_mask=None if labelled.all() or not labelled.any() else labelled,
    )
    _say(f"checkpoint: {checkpoint}")
    return estimator


def test(args, data: ImageSet | None = None) -> dict[str, float]:
    """The ``test`` command: ACC/NMI/ARI (and top-5 ACC for C100) of a checkpoint on the test split;
    ``data`` is the data set when the caller has already loaded it. With ``--json``, the scores also go
    to that file as JSON (to stdout instead of the printed line for ``-``)."""
    _check_flags(args)
    check_json_path(args.json)
    estimator = IMCSwAVClustering.load(args.cpt_load_path, device=_device(args.dev))
    data = data if data is not None else _load(args)
    images, labels = _test_split(data, args)
    if not (labels >= 0).all():
        raise ValueError(
            f"{args.path} holds no class folders, so there are no labels to score against; "
            "imc-cluster predict writes the cluster of every image instead."
        )
    proba = estimator.predict_proba(images)
    metrics = evaluate_clustering(
        labels, proba.argmax(axis=1), proba, top_k=5 if data.name == "C100" else None
    )
    if args.json != "-":
        _say(" ".join(f"{key.upper()} {value:.4f}" for key, value in metrics.items()))
    if args.json is not None and is_main(current_world()):
        report = {
            "checkpoint": str(args.cpt_load_path),
            "dataset": data.name,
            "n_images": len(images),
            "metrics": {key: float(value) for key, value in metrics.items()},
        }
        write_json(args.json, report)
    return metrics


def _say(line: str) -> None:
    """Print ``line`` (on rank 0 only, under torchrun)."""
    if is_main(current_world()):
        print(line, flush=True)


def predict(args) -> FolderPrediction:
    """The ``predict`` command (:mod:`~imc_cluster.cli.predict`): the cluster of every image file of
    ``--path``, written into ``--output_dir``."""
    return cli_predict.predict(args, None if args.dev is None else _device(args.dev))


def _message(error: Exception) -> str:
    """The first line of ``error``'s message (an OSError's without its "[Errno N]" prefix), followed by the
    flags of the estimator parameters it names."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if error.filename is None else f"{error.strerror}: {error.filename}"
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    flags = sorted({flag for name, flag in PARAM_FLAGS.items() if re.search(rf"\b{name}\b", line)})
    return f"{line} (flag: {', '.join(flags)})" if flags else line


def _fail(message: str, status: int) -> int:
    """Print ``imc-cluster: <message>`` on stderr (naming the rank under torchrun) and return ``status``."""
    world = current_world()
    rank = "" if world is None else f"rank {world.rank}: "
    print(f"imc-cluster: {rank}{message}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``imc-cluster`` and ``python -m imc_cluster``.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 after one line ``imc-cluster: <message>`` on stderr for an error
        of the run (:data:`RUN_ERRORS`: bad values, files, checkpoints, divergence, CUDA), 130 when
        interrupted. argparse exits 2 on usage errors itself; any other exception is a bug and keeps its
        traceback.
    """
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args) -> int:
    """Run the parsed command in the process group of torchrun, if any; the exit status."""
    joined = False
    try:
        joined = init_from_environment("cpu" if args.dev == "cpu" else "auto")
        {"train": train, "test": test, "predict": predict}[args.command](args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BUGS:
        raise
    except RUN_ERRORS as error:
        return _fail(_message(error), 2)
    finally:
        if joined:
            leave()
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of a run as one line ``imc-cluster: warning: <message>`` on stderr (rank 0's alone)."""
    if is_main(current_world()):
        print(f"imc-cluster: warning: {message}", file=sys.stderr, flush=True)
