"""The ``train``, ``test`` and ``predict`` commands, run through :class:`~imc_cluster.IMCSwAVClustering`:
``train`` maps the flags onto its parameters, fits on the training split with the test split as
``eval_set``, prints one line per epoch (and, with candidate Ks, the chosen K and every candidate's
score), writes the checkpoint atomically after every epoch and appends every
epoch's record to ``history.jsonl`` (and to TensorBoard when it is installed). ``--cpt_load_path`` resumes a
checkpoint with its own settings (:mod:`~imc_cluster.cli.resume`). Unlabelled folders need ``--n_clusters``
and get no score. ``test`` scores a checkpoint, reading a folder at the checkpoint's input size; ``predict``
is in :mod:`~imc_cluster.cli.predict`.

This module loads torch, the estimator and the data sets: :mod:`~imc_cluster.cli.main` imports it only when
one of these commands runs. Under ``torchrun`` (``WORLD_SIZE`` > 1) the command joins the process group first
(:func:`process_group`) and trains on every process; rank 0 alone prints and writes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from imc_cluster.augmentation.crop_sizes import CropSize
from imc_cluster.cli import predict as cli_predict
from imc_cluster.cli.flags import flag_params
from imc_cluster.cli.output import EpochLog, check_json_path, k_scores_line, write_json
from imc_cluster.cli.resume import check_data, load_size, refuse_new_network, refuse_other_size, resume
from imc_cluster.data.datasets import ImageSet, load_dataset
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.metrics import evaluate_clustering
from imc_cluster.model.pretrained import network_preprocessing, parse_backbone
from imc_cluster.prediction.folder import FolderPrediction
from imc_cluster.training.distributed import (
    current_world,
    first_on_each_node,
    init_from_environment,
    is_main,
    leave,
)

__all__ = ["estimator_params", "train", "test", "predict", "run_command"]


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


def _network_size(args, resumed: IMCSwAVClustering | None):
    """The size at which a folder's images are read for training: :func:`load_size`'s, where a new pretrained
    network's is its library's resize side (its training views are crops of those)."""
    backbone = flag_params(args)["backbone"]
    if resumed is None and args.image_size is None and args.dataset == "folder" and parse_backbone(backbone):
        return [network_preprocessing(backbone).resize]
    return load_size(args, resumed)


def _load(args, image_size: list[int] | tuple[int, int] | None) -> ImageSet:
    """The data set of ``--dataset``, ``--path`` and ``--cache_dir``, a folder's images at ``image_size``
    (one side, or H W). Under torchrun the first process of every node loads it first (downloading,
    extracting or caching it), then the others."""
    size = image_size[0] if image_size and len(image_size) == 1 else image_size
    with first_on_each_node():
        return load_dataset(args.dataset, args.path, image_size=size, cache_dir=args.cache_dir)


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
    n_clusters: int | tuple[int, ...],
    crop_sizes: tuple[CropSize, CropSize],
    checkpoint: Path | None = None,
    normalization=None,
) -> dict:
    """:class:`IMCSwAVClustering` parameters for parsed ``train`` flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``train`` arguments.
    n_clusters : int or tuple of int
        The number of clusters, or candidate ones (``--n_clusters``, else the data set's number of
        classes).
    crop_sizes : (int or (int, int), int or (int, int))
        The data set's default crop sizes (:attr:`ImageSet.crop_sizes`), used unless ``--size_crops``
        is given.
    checkpoint : Path, default=None
        Where the per-epoch checkpoint goes.
    normalization : (tuple of float, tuple of float), default=None
        The data set's published (mean, std) (:attr:`ImageSet.normalization`); None normalises with the
        training images' statistics.

    Returns
    -------
    dict
        The estimator's parameters that the flags and the data set set.
    """
    flags = flag_params(args)
    if parse_backbone(flags["backbone"]) is not None:  # the network's own crop sizes and normalisation
        crop_sizes, normalization = (None, None), None
    large, small = args.size_crops or crop_sizes
    return {
        **flags,
        "n_clusters": n_clusters,
        "large_crop_size": large,
        "small_crop_size": small,
        "checkpoint_path": None if checkpoint is None else str(checkpoint),
        "device": _device(args.dev),
        "random_state": args.seed,
        "verbose": _verbose(args),
        "normalization": normalization,
        "cache_dir": args.cache_dir,
    }


def _make_output_dir(path: Path) -> None:
    """Create ``--output_dir``; an OSError names the flag."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create --output_dir {path}: {error.strerror or error}.") from error


def _n_clusters(args, data: ImageSet, resumed: IMCSwAVClustering | None) -> int | tuple[int, ...]:
    """``--n_clusters`` (one K or candidates), else the resumed checkpoint's, else the classes of the data
    set."""
    if args.n_clusters is None and not data.n_classes and resumed is None:
        raise ValueError(
            f"{args.path} holds no class folders (unlabelled images): give the number of "
            "clusters with --n_clusters K."
        )
    if args.n_clusters is not None:
        return args.n_clusters
    return data.n_classes if resumed is None else resumed.n_clusters


def _load_checkpoint(args) -> IMCSwAVClustering:
    return IMCSwAVClustering.load(args.cpt_load_path, device=_device(args.dev))


def train(args, data: ImageSet | None = None) -> IMCSwAVClustering:
    """The ``train`` command: fit (or resume) and report every epoch; ``data`` is the data set when the
    caller has already loaded it. Unlabelled data train without evaluation."""
    _check_flags(args)
    resumed = _load_checkpoint(args) if args.cpt_load_path else None
    if resumed is not None:
        refuse_new_network(args, resumed)
    data = data if data is not None else _load(args, _network_size(args, resumed))
    output_dir = Path(args.output_dir)
    checkpoint = output_dir / args.cpt_name
    params = estimator_params(
        args, _n_clusters(args, data, resumed), data.crop_sizes, checkpoint, data.normalization
    )
    if resumed is None:
        estimator = IMCSwAVClustering(**params)
    else:
        check_data(args, data, resumed, resuming=True)
        estimator = resume(resumed, args, params)
        _say(f"resuming {args.cpt_load_path} at epoch {estimator.n_iter_} of {estimator.max_epochs}")
    train_images, train_labels = _subset(data.train_images, data.train_labels, args.limit_train, seed=0)
    test_images, test_labels = _test_split(data, args)
    _make_output_dir(output_dir)
    labelled = train_labels >= 0  # STL-10: the head trains on labelled images only
    eval_set = (test_images, test_labels) if (test_labels >= 0).all() else None
    estimator.fit(
        train_images,
        eval_set=eval_set,
        callbacks=[EpochLog(output_dir, estimator.max_epochs)],
        head_mask=None if labelled.all() or not labelled.any() else labelled,
    )
    if estimator.k_scores_ is not None:
        _say(k_scores_line(estimator.n_clusters_, estimator.k_scores_))
    _say(f"checkpoint: {checkpoint}")
    return estimator


def test(args, data: ImageSet | None = None) -> dict[str, float]:
    """The ``test`` command: ACC/NMI/ARI (and top-5 ACC for C100) of a checkpoint on the test split, a
    folder's images brought to the checkpoint's input size; ``data`` is the data set when the caller has
    already loaded it. With ``--json``, the scores also go to that file as JSON (to stdout instead of the
    printed line for ``-``)."""
    _check_flags(args)
    check_json_path(args.json)
    estimator = _load_checkpoint(args)
    refuse_other_size(args, estimator)
    data = data if data is not None else _load(args, load_size(args, estimator))
    check_data(args, data, estimator, resuming=False)
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


@contextlib.contextmanager
def process_group(dev: str | None) -> Iterator[None]:
    """Join the process group of torchrun, if any (gloo for ``--dev cpu``), for the block; leave it after."""
    joined = init_from_environment("cpu" if dev == "cpu" else "auto")
    try:
        yield
    finally:
        if joined:
            leave()


def run_command(args) -> None:
    """Run the parsed ``train``, ``test`` or ``predict`` command in the process group of torchrun, if any."""
    with process_group(args.dev):
        {"train": train, "test": test, "predict": predict}[args.command](args)
