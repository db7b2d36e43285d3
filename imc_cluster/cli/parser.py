"""The ``imc-cluster`` argument parser: the published IMC-SwAV flags of ``train`` and ``test``, the presets
of ``train``, ``predict``'s flags and ``cache``. Usage errors are one line ``imc-cluster: ...`` with exit
status 2 (:mod:`~imc_cluster.cli.usage`).

Building the parser imports neither torch nor scikit-learn: the estimator's defaults and documentation are
read from its source (:mod:`~imc_cluster.cli.sources`), so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from imc_cluster.augmentation.crop_sizes import LARGE_CROP_FRACTION, PUBLISHED_CROP_SIZES, SMALL_CROP_FRACTION
from imc_cluster.cli.flags import TRAIN_FLAGS, flag_default, split_target
from imc_cluster.cli.presets import PRESETS, apply_preset, presets_help
from imc_cluster.cli.sources import dataset_names, parameter_help
from imc_cluster.cli.usage import ClusterCounts, CommandParser, HelpFormatter, cluster_counts, folder
from imc_cluster.core.version import __version__

__all__ = ["DESCRIPTION", "build_parser", "parse_args"]

#: what ``imc-cluster --help`` says above the commands (plain text: argparse shows it as written)
DESCRIPTION = """\
Deep image clustering with IMC-SwAV, from the command line.

  imc-cluster train --dataset C10 --path ./dataset --output_dir ./c10 --cpt_name c10.cpt
  imc-cluster test  --dataset c10 --path ./dataset --cpt_load_path ./c10/c10.cpt --json c10.json
  imc-cluster train --dataset folder --path ./photos --n_clusters 20 --image_size 64 --output_dir ./run
  imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters
  imc-cluster cache --clear

train fits IMC-SwAV on a data set's training split, scores the test split after every epoch (when it has
labels), prints one line per epoch, and writes the checkpoint, history.jsonl and TensorBoard curves into
--output_dir; --cpt_load_path resumes a checkpoint with its own settings. test scores a checkpoint on the
test split (ACC, NMI, ARI). predict writes the cluster of every image file of a folder (clusters.csv), a
picture of the clusters (clusters.png) and a summary (summary.json). cache shows or empties the folder of
decoded images. Under torchrun, train runs on every process (one GPU each). Errors end the command with one
line "imc-cluster: <message>" on stderr and exit status 2."""


def _published_crop_sizes() -> str:
    """The published crop sides by image side, as help text ("28 18 on 32x32, ...")."""
    return ", ".join(
        f"{large} {small} on {side}x{side}" for side, (large, small) in PUBLISHED_CROP_SIZES.items()
    )


def _dataset_args(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """The data set flags; ``training`` adds those of the training split and shows ``--size_crops`` (which
    other commands accept, without effect, for the published ``test`` command line)."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        required=True,
        type=str.lower,
        choices=dataset_names(),
        metavar="NAME",
        help=f"data set, case-insensitive: {', '.join(dataset_names())}",
    )
    group.add_argument(
        "--path",
        default="./dataset",
        type=folder,
        help="folder holding the data set (downloaded there when missing and a network exists)",
    )
    group.add_argument(
        "--size_crops",
        type=int,
        nargs=2,
        metavar=("LARGE", "SMALL"),
        help=f"crop sides for training; default: the data set's ({_published_crop_sizes()}; "
        f"{LARGE_CROP_FRACTION} and {SMALL_CROP_FRACTION} of each axis of other images)"
        if training
        else "accepted for compatibility with the published test command; no effect "
        "(the checkpoint holds the crop sizes)",
    )
    group.add_argument(
        "--image_size",
        type=int,
        nargs="+",
        metavar="S",
        help="folder only: centre-crop and resize every image to S x S, or H x W when two "
        "sides are given (needed when the images differ in size; default with a checkpoint: its "
        "input size)",
    )
    if training:
        group.add_argument(
            "--limit_train",
            type=int,
            metavar="N",
            help="train on a random subset of N training images (quick runs)",
        )
    group.add_argument(
        "--limit_test",
        type=int,
        metavar="N",
        help="evaluate on a random subset of N test images (quick runs)",
    )
    if training:
        group.add_argument(
            "--nmb_workers",
            type=int,
            default=0,
            help="accepted for compatibility; augmentation runs batched on the training "
            "device, so there are no loader workers",
        )
    _cache_dir_arg(group)
    parser.add_argument(
        "--dev",
        default=None,
        help="GPU index (e.g. 0), 'cpu', or 'auto' (default: the first GPU when available)",
    )


def _cache_dir_arg(group) -> None:
    """``--cache_dir``, the folder of the decoded images (and the estimator's caches)."""
    group.add_argument(
        "--cache_dir",
        type=folder,
        metavar="FOLDER",
        help="folder of the caches of decoded images (default: the user's cache folder, which "
        "'imc-cluster cache' shows)",
    )


def _train_args(commands) -> None:
    """The ``train`` subcommand."""
    train_parser = commands.add_parser(
        "train",
        help="train IMC-SwAV on a data set",
        description="Train IMC-SwAV on a data set's training split, scoring the test split after every "
        "epoch. With --cpt_load_path, resume a checkpoint with its own settings: flags given change its "
        "training settings, and may not change its network.",
        epilog=presets_help(),
        formatter_class=HelpFormatter,
    )
    _dataset_args(train_parser, training=True)
    train_parser.add_argument(
        "--n_clusters",
        type=cluster_counts,
        nargs="+",
        action=ClusterCounts,
        metavar="K",
        help="number of clusters (default: the number of class folders; required for a folder without "
        "class folders); several Ks (5 10 20) or a range (5:20, 5:20:5) are candidates, whose heads "
        "(--n_heads, at least 2 each) train together, and the K whose heads agree best is kept",
    )
    train_parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="defaults of the flags below for a kind of run (listed at the end; default: the data "
        "set's own, if any)",
    )
    out = train_parser.add_argument_group("output and resume")
    out.add_argument("--output_dir", default="./output", help="folder of the checkpoint and history")
    out.add_argument("--cpt_name", default="model.cpt", help="checkpoint file name in output_dir")
    out.add_argument(
        "--cpt_load_path",
        help="checkpoint to resume training from, with its settings (flags given override them)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for title, flag, targets, keywords in TRAIN_FLAGS:
        if title not in groups:
            groups[title] = train_parser.add_argument_group(title)
        described = {"help": parameter_help(split_target(targets[0])[0]), **keywords}
        aliases = described.pop("aliases", ())
        groups[title].add_argument(flag, *aliases, default=flag_default(targets), **described)
    groups["optimisation"].add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (the estimator's random_state)",
    )
    train_parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (epoch lines still print); there is none either when stderr is not a terminal",
    )


def _test_args(commands) -> None:
    """The ``test`` subcommand."""
    test_parser = commands.add_parser(
        "test",
        help="score a checkpoint on a data set's test split",
        description="Score a checkpoint on a data set's test split: ACC, NMI and ARI (and top-5 ACC on "
        "C100). A folder's images are brought to the checkpoint's input size.",
        formatter_class=HelpFormatter,
    )
    _dataset_args(test_parser)
    test_parser.add_argument("--cpt_load_path", required=True, help="checkpoint to evaluate")
    test_parser.add_argument(
        "--json",
        "--output_json",
        metavar="FILE",
        help="also write the scores, checkpoint, data set and image count as JSON to "
        "FILE ('-': print only the JSON on stdout)",
    )


def _cache_args(commands) -> None:
    """The ``cache`` subcommand."""
    parser = commands.add_parser(
        "cache",
        help="show the cache folder of decoded images and its size, or empty it",
        description="Print the cache folder of imc-cluster (decoded image folders and features) and its "
        "size; --clear removes what it holds.",
        formatter_class=HelpFormatter,
    )
    _cache_dir_arg(parser)
    parser.add_argument("--clear", action="store_true", help="remove the cached files")


def build_parser() -> argparse.ArgumentParser:
    """The ``imc-cluster`` argument parser."""
    parser = CommandParser(prog="imc-cluster", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"imc-cluster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,test,predict,cache}")
    _train_args(commands)
    _test_args(commands)
    _predict_args(commands)
    _cache_args(commands)
    return parser


def _predict_args(commands) -> None:
    """The ``predict`` subcommand."""
    parser = commands.add_parser(
        "predict",
        help="assign every image file of a folder to a cluster",
        description="Assign every image file of a folder to a cluster of a trained "
        "model: clusters.csv, clusters.png and summary.json.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--cpt_load_path", required=True, help="checkpoint of a trained model")
    parser.add_argument(
        "--path",
        required=True,
        type=folder,
        help="folder of image files, searched recursively (any format PIL reads, any size: "
        "each image is centre-cropped and resized to the model's input)",
    )
    _cache_dir_arg(parser)
    parser.add_argument(
        "--output_dir", default="./clusters", help="folder for clusters.csv, clusters.png and summary.json"
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=256,
        help="images decoded and predicted at a time (bounds the memory)",
    )
    parser.add_argument(
        "--dev",
        default=None,
        help="GPU index (e.g. 0), 'cpu', or 'auto' (default: the checkpoint's device when present)",
    )
    parser.add_argument(
        "--copy_to",
        type=folder,
        metavar="DIR",
        help="also copy every readable file into DIR/cluster_<k>/ (DIR/uncertain/ below --min_confidence); "
        "names taken there get a number, nothing is overwritten; DIR must lie outside --path",
    )
    parser.add_argument(
        "--link_to",
        type=folder,
        metavar="DIR",
        help="as --copy_to, with symbolic links to the files instead of copies",
    )
    parser.add_argument(
        "--min_confidence",
        type=float,
        metavar="P",
        help="files whose cluster probability is below P (0 <= P <= 1) are marked uncertain in "
        "clusters.csv and go to DIR/uncertain/",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of the subcommands, by name."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _given(argv: list[str]) -> frozenset[str]:
    """The destinations of the flags that ``argv`` gives, defaults aside: ``argv`` parsed with every default
    of the subcommands suppressed."""
    parser = build_parser()
    for command in _subcommands(parser).values():
        for action in command._actions:
            action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv))) - {"command"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, with the :data:`PRESETS` as defaults of ``train`` flags.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; None reads ``sys.argv``.

    Returns
    -------
    argparse.Namespace
        The arguments, and ``given``: the destinations of the flags the command line gives (a resumed
        ``train`` overrides its checkpoint's settings with those alone).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.given = _given(argv)
    if args.command == "train":
        apply_preset(args)
    return args
