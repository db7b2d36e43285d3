"""The ``imc-cluster`` argument parser: the published IMC-SwAV flags of ``train`` and ``test``, the data
sets' presets, and ``predict``'s flags. Usage errors are one line ``imc-cluster: ...`` with exit status 2."""

from __future__ import annotations

import argparse
from typing import Sequence

from . import __version__
from .datasets import DATASETS
from .networks import RESNET_LAYOUTS

__all__ = ["DESCRIPTION", "PARAM_FLAGS", "PRESETS", "build_parser", "parse_args"]

#: what ``imc-cluster --help`` says above the commands (plain text: argparse shows it as written)
DESCRIPTION = """\
Deep image clustering with IMC-SwAV, from the command line.

  imc-cluster train --dataset C10 --path ./dataset --output_dir ./c10 --cpt_name c10.cpt
  imc-cluster test  --dataset c10 --path ./dataset --cpt_load_path ./c10/c10.cpt --json c10.json
  imc-cluster train --dataset folder --path ./photos --n_clusters 20 --image_size 64 --output_dir ./run
  imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters

train fits IMC-SwAV on a data set's training split, scores the test split after every epoch (when it has
labels), prints one line per epoch, and writes the checkpoint, history.jsonl and TensorBoard curves into
--output_dir; --cpt_load_path resumes a checkpoint. test scores a checkpoint on the test split (ACC, NMI,
ARI). predict writes the cluster of every image file of a folder (clusters.csv), a picture of the clusters
(clusters.png) and a summary (summary.json). Under torchrun, train runs on every process (one GPU each).
Errors end the command with one line "imc-cluster: <message>" on stderr and exit status 2."""


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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows the default of a flag that has one (not "default: None" or "default: False")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _dataset_args(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """The data set flags; ``training`` adds those of the training split and shows ``--size_crops`` (which
    other commands accept, without effect, for the published ``test`` command line)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", required=True, type=str.lower, choices=DATASETS, metavar="NAME",
                       help=f"data set, case-insensitive: {', '.join(DATASETS)}")
    group.add_argument("--path", default="./dataset",
                       help="folder holding the data set (downloaded there when missing and a network "
                            "exists)")
    group.add_argument("--size_crops", type=int, nargs=2, metavar=("LARGE", "SMALL"),
                       help="crop sides for training; default: the data set's (28 18 on 32x32, 56 36 on "
                            "64x64, 76 52 on 96x96; 0.875 and 0.5625 of each axis of non-square images)"
                       if training else argparse.SUPPRESS)
    group.add_argument("--image_size", type=int, nargs="+", metavar="S",
                       help="folder only: centre-crop and resize every image to S x S, or H x W when two "
                            "sides are given (needed when the images differ in size)")
    if training:
        group.add_argument("--limit_train", type=int, metavar="N",
                           help="train on a random subset of N training images (quick runs)")
    group.add_argument("--limit_test", type=int, metavar="N",
                       help="evaluate on a random subset of N test images (quick runs)")
    if training:
        group.add_argument("--nmb_workers", type=int, default=0,
                           help="accepted for compatibility; augmentation runs batched on the training "
                                "device, so there are no loader workers")
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
    parser = _Parser(prog="imc-cluster", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imc-cluster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,test,predict}")

    train_parser = commands.add_parser("train", help="train IMC-SwAV on a data set",
                                       description="Train IMC-SwAV on a data set's training split, scoring "
                                                   "the test split after every epoch.",
                                       formatter_class=_HelpFormatter)
    _dataset_args(train_parser, training=True)
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
    method.add_argument("--max_scale_crops", type=float, nargs=2, default=[1.0, 0.4],
                        metavar=("LARGE", "SMALL"), help="largest crop area fraction")
    method.add_argument("--min_scale_crops", type=float, nargs=2, default=[0.2, 0.08],
                        metavar=("LARGE", "SMALL"), help="smallest crop area fraction")
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
    train_parser.add_argument("--quiet", action="store_true",
                              help="no progress bar (epoch lines still print); there is none either when "
                                   "stderr is not a terminal")

    test_parser = commands.add_parser("test", help="score a checkpoint on a data set's test split",
                                      description="Score a checkpoint on a data set's test split: ACC, NMI "
                                                  "and ARI (and top-5 ACC on C100).",
                                      formatter_class=_HelpFormatter)
    _dataset_args(test_parser)
    test_parser.add_argument("--cpt_load_path", required=True, help="checkpoint to evaluate")
    test_parser.add_argument("--json", "--output_json", metavar="FILE",
                             help="also write the scores, checkpoint, data set and image count as JSON to "
                                  "FILE ('-': print only the JSON on stdout)")
    _predict_args(commands)
    return parser


def _predict_args(commands) -> None:
    """The ``predict`` subcommand."""
    parser = commands.add_parser("predict", help="assign every image file of a folder to a cluster",
                                 description="Assign every image file of a folder to a cluster of a trained "
                                             "model: clusters.csv, clusters.png and summary.json.",
                                 formatter_class=_HelpFormatter)
    parser.add_argument("--cpt_load_path", required=True, help="checkpoint of a trained model")
    parser.add_argument("--path", required=True,
                        help="folder of image files, searched recursively (any format PIL reads, any size: "
                             "each image is centre-cropped and resized to the model's input)")
    parser.add_argument("--output_dir", default="./clusters",
                        help="folder for clusters.csv, clusters.png and summary.json")
    parser.add_argument("--batch_size", type=int, default=256,
                        help="images decoded and predicted at a time (bounds the memory)")
    parser.add_argument("--dev", default=None,
                        help="GPU index (e.g. 0), 'cpu', or 'auto' (default: the checkpoint's device when "
                             "present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, with the data set's :data:`PRESETS` as defaults of ``train`` flags."""
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.dataset in PRESETS:
        args = build_parser(PRESETS[args.dataset]).parse_args(argv)
    return args
