"""The ``imc-cluster`` command line: ``train`` and ``test`` with the published IMC-SwAV flags; ``predict``.

    imc-cluster train --dataset C10 --path ./dataset --size_crops 28 18 --output_dir ./c10 --cpt_name c10.cpt
    imc-cluster test  --dataset c10 --path ./dataset --size_crops 28 18 --cpt_load_path ./c10/c10.cpt
    imc-cluster train --dataset folder --path ./photos --n_clusters 20 --image_size 64 --output_dir ./run
    imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters

Both run through :class:`~imc_cluster.IMCSwAVClustering`: ``train`` maps the flags onto its parameters,
fits on the training split with the test split as ``eval_set``, prints one line per epoch, writes the
checkpoint atomically after every epoch and appends every epoch's record to ``history.jsonl`` (and to
TensorBoard when it is installed). ``--cpt_load_path`` resumes a checkpoint with ``warm_start``. Unlabelled
folders need ``--n_clusters`` and get no score. ``predict`` is in :mod:`~imc_cluster.cli_predict`.

An error of the run (a bad flag value, a missing or unreadable file or checkpoint, a diverged fit, a CUDA
error) ends the command with one line ``imc-cluster: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import cli_predict
from .config import ARCHITECTURE_PARAMS
from .datasets import DATASETS, CropSize, ImageSet, load_dataset
from .estimator import IMCSwAVClustering
from .folder_prediction import FolderPrediction
from .metrics import evaluate_clustering
from .networks import RESNET_LAYOUTS
from .persistence import CheckpointError
from .training import DivergenceError

__all__ = ["PRESETS", "PARAM_FLAGS", "RUN_ERRORS", "main", "build_parser", "parse_args", "estimator_params",
           "train", "test", "predict"]


#: errors of a run rather than of the program, which ``main`` reports in one line with exit status 2: bad
#: values and checkpoints (a CheckpointError is a ValueError), files, a diverged fit, and torch's runtime
#: errors (CUDA)
RUN_ERRORS = (ValueError, TypeError, OSError, CheckpointError, DivergenceError, RuntimeError)
#: RuntimeError subclasses that are bugs: they keep their traceback
BUGS = (NotImplementedError, RecursionError)

#: flags of the estimator parameters that have another name on the command line; an error message citing
#: such a parameter is followed by its flag
PARAM_FLAGS: dict[str, str] = {
    "backbone": "--model_type", "n_prototypes": "--prototypes", "projection_dim": "--project_dim",
    "n_large_crops": "--nmb_crops", "n_small_crops": "--nmb_crops", "large_crop_size": "--size_crops",
    "small_crop_size": "--size_crops", "large_crop_scale": "--min_scale_crops/--max_scale_crops",
    "small_crop_scale": "--min_scale_crops/--max_scale_crops", "temperature": "--tau",
    "sinkhorn_epsilon": "--eps", "weight_decay": "--l2_w", "warmup_updates": "--warmup",
    "max_epochs": "--epochs", "lr_milestones": "--milestones", "random_state": "--seed", "device": "--dev",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line ``imc-cluster: ...`` (exit status 2), like every
    other error of the command line; ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"imc-cluster: {self.prog.removeprefix('imc-cluster').strip() or 'usage'}: {message} "
                     f"(see {self.prog} --help)\n")


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", required=True, type=str.lower, choices=DATASETS, metavar="NAME",
                       help=f"data set, case-insensitive: {', '.join(DATASETS)}")
    group.add_argument("--path", default="./dataset",
                       help="folder holding the data set (downloaded there when missing and a network exists)")
    group.add_argument("--size_crops", type=int, nargs=2, metavar=("LARGE", "SMALL"),
                       help="crop sides for training (test evaluates whole images); default: the data set's "
                            "(28 18 on 32x32, 56 36 on 64x64, 76 52 on 96x96; 0.875 and 0.5625 of each axis of "
                            "non-square images)")
    group.add_argument("--image_size", type=int, nargs="+", metavar="S",
                       help="folder only: centre-crop and resize every image to S x S, or H x W when two "
                            "sides are given (needed when the images differ in size)")
    group.add_argument("--limit_train", type=int, metavar="N",
                       help="train on a random subset of N training images (quick runs)")
    group.add_argument("--limit_test", type=int, metavar="N",
                       help="evaluate on a random subset of N test images (quick runs)")
    group.add_argument("--nmb_workers", type=int, default=0,
                       help="accepted for compatibility; augmentation runs batched on the training device, "
                            "so there are no loader workers")
    parser.add_argument("--dev", default=None,
                        help="GPU index (e.g. 0), 'cpu', or 'auto' (default: the first GPU when available)")


#: per-data-set defaults of ``train`` flags, where the published ones do not fit (flags given win)
PRESETS: dict[str, dict] = {
    # 8x8 digits: a narrow ResNet-18, gentle crops, no mirroring (it changes digits), a CPU-sized schedule;
    # ACC 0.964 (0.005) over 3 seeds in 4 minutes each on 2 cores (benchmarks/results/digits.md)
    "digits": dict(epochs=150, prototypes=100, backbone_width=16, batch_size=128, learning_rate=1e-3,
                   warmup=50, milestones=[100, 130], min_scale_crops=[0.5, 0.3], max_scale_crops=[1.0, 0.6],
                   flip_prob=0.0, color_jitter=[0.2, 0.2, 0.0, 0.0], color_jitter_prob=0.5),
}


def build_parser(preset: dict | None = None) -> argparse.ArgumentParser:
    """The ``imc-cluster`` argument parser; ``preset`` overrides defaults of ``train`` flags."""
    parser = _Parser(prog="imc-cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,test,predict}")

    train_parser = commands.add_parser("train", help="train IMC-SwAV on a data set",
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _dataset_args(train_parser)
    train_parser.add_argument("--n_clusters", type=int, metavar="K",
                              help="number of clusters (default: the number of class folders; required for "
                                   "a folder without class folders)")
    out = train_parser.add_argument_group("output and resume")
    out.add_argument("--output_dir", default="./output", help="folder of the checkpoint and history")
    out.add_argument("--cpt_name", default="model.cpt", help="checkpoint file name in output_dir")
    out.add_argument("--cpt_load_path", help="checkpoint to resume training from")
    method = train_parser.add_argument_group("method")
    method.add_argument("--nmb_crops", type=int, nargs=2, default=[2, 4], metavar=("LARGE", "SMALL"),
                        help="large and small crops per image")
    method.add_argument("--max_scale_crops", type=float, nargs=2, default=[1.0, 0.4], metavar=("LARGE", "SMALL"),
                        help="largest crop area fraction")
    method.add_argument("--min_scale_crops", type=float, nargs=2, default=[0.2, 0.08], metavar=("LARGE", "SMALL"),
                        help="smallest crop area fraction")
    method.add_argument("--tau", type=float, default=0.1, help="softmax temperature")
    method.add_argument("--eps", type=float, default=0.05, help="Sinkhorn-Knopp regularisation")
    method.add_argument("--project_dim", type=int, default=128, help="projection dimension")
    method.add_argument("--prototypes", type=int, default=1000, help="number of prototypes")
    method.add_argument("--model_type", default="resnet18", choices=sorted(RESNET_LAYOUTS), help="encoder")
    method.add_argument("--backbone_width", type=int, default=64, help="channels of the first ResNet stage")
    optim = train_parser.add_argument_group("optimisation")
    optim.add_argument("--learning_rate", type=float, default=5e-4, help="Adam learning rate")
    optim.add_argument("--warmup", type=int, default=500, help="linear warm-up updates")
    optim.add_argument("--l2_w", type=float, default=1e-5, help="weight decay")
    optim.add_argument("--epochs", type=int, default=500, help="total training epochs")
    optim.add_argument("--batch_size", type=int, default=256, help="images per update")
    optim.add_argument("--milestones", type=int, nargs="+", default=[150, 300, 400],
                       help="epochs at which the learning rate is multiplied by 0.4")
    optim.add_argument("--seed", type=int, default=0, help="random seed")
    speed = train_parser.add_argument_group("speed and memory")
    speed.add_argument("--compile", action="store_true", help="train through torch.compile")
    speed.add_argument("--precision", default="auto", choices=("auto", "bfloat16", "float32"),
                       help="network arithmetic in training: auto is bf16 on CUDA, float32 on the CPU")
    speed.add_argument("--activation_checkpointing", action="store_true",
                       help="recompute ResNet blocks in the backward pass to save activation memory")
    views = train_parser.add_argument_group("view augmentation")
    views.add_argument("--flip_prob", type=float, default=0.5, help="horizontal flip probability")
    views.add_argument("--color_jitter", type=float, nargs=4, default=[0.4, 0.4, 0.4, 0.1],
                       metavar=("B", "C", "S", "H"), help="brightness, contrast, saturation, hue strength")
    views.add_argument("--color_jitter_prob", type=float, default=0.8, help="colour jitter probability")
    train_parser.set_defaults(**(preset or {}))
    train_parser.add_argument("--quiet", action="store_true", help="no progress bar (epoch lines still print)")

    test_parser = commands.add_parser("test", help="score a checkpoint on a data set's test split",
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _dataset_args(test_parser)
    test_parser.add_argument("--cpt_load_path", required=True, help="checkpoint to evaluate")
    cli_predict.add_predict_parser(commands)
    return parser


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
    _device(args.dev)
    for flag in ("limit_train", "limit_test"):
        limit = getattr(args, flag)
        if limit is not None and limit < 1:
            raise ValueError(f"--{flag} must be a positive number of images, got {limit}.")
    size = args.image_size
    if size is not None and (len(size) > 2 or min(size) < 1):
        raise ValueError(f"--image_size takes one side S or two sides H W, positive; got {size}.")


def _load(args) -> ImageSet:
    """The data set of ``--dataset``, ``--path`` and ``--image_size`` (one side, or H W)."""
    size = args.image_size
    return load_dataset(args.dataset, args.path, image_size=size[0] if size and len(size) == 1 else size)


def _subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int):
    if limit is None or limit >= len(images):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
    return images[keep], labels[keep]


def _test_split(data: ImageSet, args) -> tuple[np.ndarray, np.ndarray]:
    return _subset(data.test_images, data.test_labels, args.limit_test, seed=1)


def estimator_params(args, n_clusters: int, crop_sizes: tuple[CropSize, CropSize],
                     checkpoint: Path | None = None, normalization=None) -> dict:
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
    return dict(
        n_clusters=n_clusters, backbone=args.model_type, backbone_width=args.backbone_width,
        n_prototypes=args.prototypes, projection_dim=args.project_dim,
        n_large_crops=args.nmb_crops[0], n_small_crops=args.nmb_crops[1],
        large_crop_size=large, small_crop_size=small,
        large_crop_scale=(args.min_scale_crops[0], args.max_scale_crops[0]),
        small_crop_scale=(args.min_scale_crops[1], args.max_scale_crops[1]),
        temperature=args.tau, sinkhorn_epsilon=args.eps, learning_rate=args.learning_rate,
        warmup_updates=args.warmup, weight_decay=args.l2_w, max_epochs=args.epochs, lr_milestones=tuple(args.milestones),
        batch_size=args.batch_size, flip_prob=args.flip_prob, color_jitter=tuple(args.color_jitter),
        color_jitter_prob=args.color_jitter_prob, checkpoint_path=None if checkpoint is None else str(checkpoint),
        device=_device(args.dev), compile=args.compile, precision=args.precision,
        activation_checkpointing=args.activation_checkpointing,
        random_state=args.seed, verbose=0 if args.quiet else 1, normalization=normalization,
    )


class EpochLog:
    """After every epoch: one printed line, TensorBoard scalars, and ``history.jsonl`` rewritten from the
    estimator's ``history_`` (one JSON line per epoch: a fresh run replaces an older run's file, a resumed
    run continues its checkpoint's epochs)."""

    def __init__(self, output_dir: Path, total_epochs: int) -> None:
        self.history = output_dir / "history.jsonl"
        self.total = total_epochs
        self.writer = _tensorboard(output_dir / "tensorboard")

    def __call__(self, estimator: IMCSwAVClustering, record: dict) -> None:
        epoch = record["epoch"]
        scores = (f"test ACC {record['acc']:.4f} NMI {record['nmi']:.4f} ARI {record['ari']:.4f} | "
                  if "acc" in record else "")  # none without labels
        print(f"epoch {epoch}/{self.total} | loss {record['loss']:.4f} swav {record['swav']:.4f} "
              f"mi {record['mi']:.4f} reg {record['reg']:.4f} | {scores}"
              f"{record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s", flush=True)
        self.history.write_text("".join(json.dumps(r) + "\n" for r in estimator.history_))
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, epoch)
            self.writer.flush()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))


def _check_architecture(estimator: IMCSwAVClustering, params: dict, path: str) -> None:
    """Refuse to resume a checkpoint whose network differs from the one the flags describe."""
    saved = estimator.get_params()
    if saved["backbone"] == "auto":  # "auto" is ResNet-18 on images
        saved["backbone"] = "resnet18"
    labels = {**PARAM_FLAGS, "n_clusters": "--n_clusters (default: the classes of --dataset)"}
    differences = [f"{labels.get(name, '--' + name)} {saved[name]}, not {params[name]}"
                   for name in ARCHITECTURE_PARAMS if name in params and saved[name] != params[name]]
    if differences:
        raise ValueError(f"{path} holds another network than the flags describe: it was trained with "
                         f"{'; '.join(differences)}. Resume with the flags it was trained with.")


def _make_output_dir(path: Path) -> None:
    """Create ``--output_dir``; an OSError names the flag."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create --output_dir {path}: {error.strerror or error}.") from error


def _n_clusters(args, data: ImageSet, resumed: IMCSwAVClustering | None) -> int:
    """``--n_clusters``, else the classes of the data set, else (unlabelled) the resumed checkpoint's."""
    if args.n_clusters is None and not data.n_classes and resumed is None:
        raise ValueError(f"{args.path} holds no class folders (unlabelled images): give the number of "
                         "clusters with --n_clusters K.")
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
    params = estimator_params(args, _n_clusters(args, data, resumed), data.crop_sizes, checkpoint,
                              data.normalization)
    if resumed is not None:
        _check_architecture(resumed, params, args.cpt_load_path)
        estimator = resumed
        estimator.set_params(max_epochs=args.epochs, checkpoint_path=str(checkpoint), warm_start=True,
                             verbose=params["verbose"])
        print(f"resuming {args.cpt_load_path} at epoch {estimator.n_iter_} of {args.epochs}", flush=True)
    else:
        estimator = IMCSwAVClustering(**params)
    train_images, train_labels = _subset(data.train_images, data.train_labels, args.limit_train, seed=0)
    test_images, test_labels = _test_split(data, args)
    _make_output_dir(output_dir)
    labelled = train_labels >= 0  # STL-10: the head trains on labelled images only
    eval_set = (test_images, test_labels) if (test_labels >= 0).all() else None
    estimator.fit(train_images, eval_set=eval_set, callbacks=[EpochLog(output_dir, args.epochs)],
                  head_mask=None if labelled.all() or not labelled.any() else labelled)
    print(f"checkpoint: {checkpoint}")
    return estimator


def test(args, data: ImageSet | None = None) -> dict[str, float]:
    """The ``test`` command: ACC/NMI/ARI (and top-5 ACC for C100) of a checkpoint on the test split;
    ``data`` is the data set when the caller has already loaded it."""
    _check_flags(args)
    estimator = IMCSwAVClustering.load(args.cpt_load_path, device=_device(args.dev))
    data = data if data is not None else _load(args)
    images, labels = _test_split(data, args)
    if not (labels >= 0).all():
        raise ValueError(f"{args.path} holds no class folders, so there are no labels to score against; "
                         "imc-cluster predict writes the cluster of every image instead.")
    proba = estimator.predict_proba(images)
    metrics = evaluate_clustering(labels, proba.argmax(axis=1), proba,
                                  top_k=5 if data.name == "C100" else None)
    print(" ".join(f"{key.upper()} {value:.4f}" for key, value in metrics.items()))
    return metrics


def predict(args) -> FolderPrediction:
    """The ``predict`` command (:mod:`~imc_cluster.cli_predict`): the cluster of every image file of
    ``--path``, written into ``--output_dir``."""
    return cli_predict.predict(args, None if args.dev is None else _device(args.dev))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, with the data set's :data:`PRESETS` as defaults of ``train`` flags."""
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.dataset in PRESETS:
        args = build_parser(PRESETS[args.dataset]).parse_args(argv)
    return args


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
    """Print ``imc-cluster: <message>`` on stderr and return ``status``."""
    print(f"imc-cluster: {message}", file=sys.stderr, flush=True)
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
    try:
        {"train": train, "test": test, "predict": predict}[args.command](args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BUGS:
        raise
    except RUN_ERRORS as error:
        return _fail(_message(error), 2)
    return 0
