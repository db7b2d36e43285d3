"""The ``imc-cluster`` argument parser: the published IMC-SwAV flags of ``train`` and ``test``, the data
sets' presets, and ``predict``'s flags. Usage errors are one line ``imc-cluster: ...`` with exit status 2."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sklearn.utils._param_validation import StrOptions

from imc_cluster.augmentation.crop_sizes import LARGE_CROP_FRACTION, PUBLISHED_CROP_SIZES, SMALL_CROP_FRACTION
from imc_cluster.core.version import __version__
from imc_cluster.data.datasets import DATASETS
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.estimator.params import PARAMETER_CONSTRAINTS

__all__ = [
    "DESCRIPTION",
    "DEFAULTS",
    "TRAIN_FLAGS",
    "PARAM_FLAGS",
    "PRESETS",
    "build_parser",
    "parse_args",
    "flag_params",
]

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


#: the estimator's defaults: a flag of an estimator parameter defaults to the parameter's default
DEFAULTS = IMCSwAVClustering().get_params()


def _options(name: str) -> set[str]:
    """The strings the estimator's constraints allow for parameter ``name``."""
    return set(next(c for c in PARAMETER_CONSTRAINTS[name] if isinstance(c, StrOptions)).options)


#: ``train`` flags of estimator parameters: (option group, flag, targets, argparse keywords). A target is a
#: parameter, or ``(parameter, i)`` for entry ``i`` of a pair parameter; a flag of several values sets one
#: target each. The flags' defaults, help and translation into parameters all come from this table and the
#: estimator (:data:`DEFAULTS`, its docstring).
TRAIN_FLAGS = (
    (
        "method",
        "--nmb_crops",
        ("n_large_crops", "n_small_crops"),
        dict(type=int, nargs=2, metavar=("LARGE", "SMALL")),
    ),
    (
        "method",
        "--max_scale_crops",
        (("large_crop_scale", 1), ("small_crop_scale", 1)),
        dict(type=float, nargs=2, metavar=("LARGE", "SMALL")),
    ),
    (
        "method",
        "--min_scale_crops",
        (("large_crop_scale", 0), ("small_crop_scale", 0)),
        dict(type=float, nargs=2, metavar=("LARGE", "SMALL")),
    ),
    ("method", "--tau", ("temperature",), dict(type=float)),
    ("method", "--eps", ("sinkhorn_epsilon",), dict(type=float)),
    ("method", "--project_dim", ("projection_dim",), dict(type=int)),
    ("method", "--prototypes", ("n_prototypes",), dict(type=int)),
    ("method", "--model_type", ("backbone",), dict(choices=sorted(_options("backbone") - {"mlp"}))),
    ("method", "--backbone_width", ("backbone_width",), dict(type=int)),
    ("optimisation", "--learning_rate", ("learning_rate",), dict(type=float)),
    ("optimisation", "--warmup", ("warmup_updates",), dict(type=int)),
    ("optimisation", "--l2_w", ("weight_decay",), dict(type=float)),
    ("optimisation", "--epochs", ("max_epochs",), dict(type=int)),
    ("optimisation", "--batch_size", ("batch_size",), dict(type=int)),
    ("optimisation", "--milestones", ("lr_milestones",), dict(type=int, nargs="+")),
    ("speed and memory", "--compile", ("compile",), dict(action="store_true")),
    ("speed and memory", "--precision", ("precision",), dict(choices=sorted(_options("precision")))),
    (
        "speed and memory",
        "--activation_checkpointing",
        ("activation_checkpointing",),
        dict(action="store_true"),
    ),
    ("view augmentation", "--flip_prob", ("flip_prob",), dict(type=float)),
    (
        "view augmentation",
        "--color_jitter",
        ("color_jitter",),
        dict(type=float, nargs=4, metavar=("B", "C", "S", "H")),
    ),
    ("view augmentation", "--color_jitter_prob", ("color_jitter_prob",), dict(type=float)),
)


def _split(target) -> tuple[str, int | None]:
    return target if isinstance(target, tuple) else (target, None)


def _flag_default(targets: tuple):
    """A flag's default: its parameters' defaults (lists where the flag takes several values)."""
    values = []
    for name, index in map(_split, targets):
        value = DEFAULTS[name] if index is None else DEFAULTS[name][index]
        values.append(list(value) if isinstance(value, tuple) else value)
    return values[0] if len(values) == 1 else values


def flag_params(args: argparse.Namespace) -> dict:
    """The estimator parameters that the :data:`TRAIN_FLAGS` of parsed ``train`` arguments set."""
    params: dict = {}
    for _, flag, targets, _ in TRAIN_FLAGS:
        value = getattr(args, flag.lstrip("-"))
        for (name, index), part in zip(map(_split, targets), value if len(targets) > 1 else [value]):
            if index is None:
                params[name] = tuple(part) if isinstance(part, list) else part
            else:
                params.setdefault(name, [None, None])[index] = part
    return {name: tuple(value) if isinstance(value, list) else value for name, value in params.items()}


#: the flag of each estimator parameter that has one (an error message citing the parameter names it)
PARAM_FLAGS: dict[str, str] = {
    **{_split(target)[0]: flag for _, flag, targets, _ in TRAIN_FLAGS for target in targets},
    "large_crop_scale": "--min_scale_crops/--max_scale_crops",
    "small_crop_scale": "--min_scale_crops/--max_scale_crops",
    "large_crop_size": "--size_crops",
    "small_crop_size": "--size_crops",
    "random_state": "--seed",
    "device": "--dev",
}


def _published_crop_sizes() -> str:
    """The published crop sides by image side, as help text ("28 18 on 32x32, ...")."""
    return ", ".join(
        f"{large} {small} on {side}x{side}" for side, (large, small) in PUBLISHED_CROP_SIZES.items()
    )


def _parameter_help(name: str) -> str:
    """The first sentence of parameter ``name``'s description in the estimator's docstring, as plain text."""
    lines = (IMCSwAVClustering.__doc__ or "").splitlines()
    for number, line in enumerate(lines):
        names = line.strip().partition(" : ")[0]
        if " : " in line and name in (n.strip() for n in names.split(",")):
            text = " ".join(following.strip() for following in lines[number + 1 : number + 4])
            return text.split(". ")[0].rstrip(".").replace("``", "")
    raise LookupError(f"The estimator documents no parameter {name!r}.")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line ``imc-cluster: ...`` (exit status 2), like every
    other error of the command line; ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(
            2,
            f"imc-cluster: {self.prog.removeprefix('imc-cluster').strip() or 'usage'}: {message} "
            f"(see {self.prog} --help)\n",
        )


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
    group.add_argument(
        "--dataset",
        required=True,
        type=str.lower,
        choices=DATASETS,
        metavar="NAME",
        help=f"data set, case-insensitive: {', '.join(DATASETS)}",
    )
    group.add_argument(
        "--path",
        default="./dataset",
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
        "sides are given (needed when the images differ in size)",
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
    parser.add_argument(
        "--dev",
        default=None,
        help="GPU index (e.g. 0), 'cpu', or 'auto' (default: the first GPU when available)",
    )


#: per-data-set defaults of ``train`` flags, where the published ones do not fit (flags given win)
PRESETS: dict[str, dict] = {
    # 8x8 digits: a narrow ResNet-18, gentle crops, no mirroring (it changes digits), a CPU-sized schedule;
    # ACC 0.964 (0.005) over 3 seeds in 4 minutes each on 2 cores (benchmarks/results/digits.md)
    "digits": dict(
        epochs=150,
        prototypes=100,
        backbone_width=16,
        batch_size=128,
        learning_rate=1e-3,
        warmup=50,
        milestones=[100, 130],
        min_scale_crops=[0.5, 0.3],
        max_scale_crops=[1.0, 0.6],
        flip_prob=0.0,
        color_jitter=[0.2, 0.2, 0.0, 0.0],
        color_jitter_prob=0.5,
    ),
}


def build_parser(preset: dict | None = None) -> argparse.ArgumentParser:
    """The ``imc-cluster`` argument parser; ``preset`` overrides defaults of ``train`` flags."""
    parser = _Parser(
        prog="imc-cluster", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"imc-cluster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,test,predict}")

    train_parser = commands.add_parser(
        "train",
        help="train IMC-SwAV on a data set",
        description="Train IMC-SwAV on a data set's training split, scoring "
        "the test split after every epoch.",
        formatter_class=_HelpFormatter,
    )
    _dataset_args(train_parser, training=True)
    train_parser.add_argument(
        "--n_clusters",
        type=int,
        metavar="K",
        help="number of clusters (default: the number of class folders; required for "
        "a folder without class folders)",
    )
    out = train_parser.add_argument_group("output and resume")
    out.add_argument("--output_dir", default="./output", help="folder of the checkpoint and history")
    out.add_argument("--cpt_name", default="model.cpt", help="checkpoint file name in output_dir")
    out.add_argument("--cpt_load_path", help="checkpoint to resume training from")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for title, flag, targets, keywords in TRAIN_FLAGS:
        if title not in groups:
            groups[title] = train_parser.add_argument_group(title)
        name = _split(targets[0])[0]
        groups[title].add_argument(
            flag, default=_flag_default(targets), help=_parameter_help(name), **keywords
        )
    groups["optimisation"].add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed (the estimator's random_state)",
    )
    train_parser.set_defaults(**(preset or {}))
    train_parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (epoch lines still print); there is none either when stderr is not a terminal",
    )

    test_parser = commands.add_parser(
        "test",
        help="score a checkpoint on a data set's test split",
        description="Score a checkpoint on a data set's test split: ACC, NMI "
        "and ARI (and top-5 ACC on C100).",
        formatter_class=_HelpFormatter,
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
    _predict_args(commands)
    return parser


def _predict_args(commands) -> None:
    """The ``predict`` subcommand."""
    parser = commands.add_parser(
        "predict",
        help="assign every image file of a folder to a cluster",
        description="Assign every image file of a folder to a cluster of a trained "
        "model: clusters.csv, clusters.png and summary.json.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--cpt_load_path", required=True, help="checkpoint of a trained model")
    parser.add_argument(
        "--path",
        required=True,
        help="folder of image files, searched recursively (any format PIL reads, any size: "
        "each image is centre-cropped and resized to the model's input)",
    )
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, with the data set's :data:`PRESETS` as defaults of ``train`` flags."""
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.dataset in PRESETS:
        args = build_parser(PRESETS[args.dataset]).parse_args(argv)
    return args
