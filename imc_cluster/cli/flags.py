"""The ``train`` flags of estimator parameters: the table that gives each its targets (:data:`TRAIN_FLAGS`),
their defaults (the estimator's, :data:`DEFAULTS`), the parameters parsed flags set (:func:`flag_params`), and
the flag of every parameter (:data:`PARAM_FLAGS`), with which messages and conflicts name them."""

from __future__ import annotations

import argparse

from imc_cluster.cli.sources import estimator_defaults, parameter_options
from imc_cluster.cli.usage import duration, freeze_choice

__all__ = [
    "DEFAULTS",
    "TRAIN_FLAGS",
    "PARAM_FLAGS",
    "split_target",
    "flag_default",
    "flag_params",
    "given_params",
]

#: the estimator's defaults: a flag of an estimator parameter defaults to the parameter's default
DEFAULTS = estimator_defaults()

#: ``train`` flags of estimator parameters: (option group, flag, targets, argparse keywords). A target is a
#: parameter, or ``(parameter, i)`` for entry ``i`` of a pair parameter; a flag of several values sets one
#: target each. The flags' defaults, help (unless the keywords give it) and translation into parameters all
#: come from this table and the estimator (:data:`DEFAULTS`, its docstring); ``aliases`` among the keywords
#: are other names of the flag.
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
    ("method", "--model_type", ("backbone",), dict(metavar="NAME", aliases=("--backbone",))),
    ("method", "--backbone_width", ("backbone_width",), dict(type=int)),
    ("method", "--n_heads", ("n_heads",), dict(type=int)),
    ("method", "--weights", ("weights",), dict(metavar="pretrained|PATH")),
    (
        "method",
        "--freeze_encoder",
        ("freeze_encoder",),
        dict(type=freeze_choice, metavar="auto|true|false"),
    ),
    ("optimisation", "--learning_rate", ("learning_rate",), dict(type=float)),
    ("optimisation", "--warmup", ("warmup_updates",), dict(type=int)),
    ("optimisation", "--l2_w", ("weight_decay",), dict(type=float)),
    ("optimisation", "--epochs", ("max_epochs",), dict(type=int)),
    (
        "optimisation",
        "--max_time",
        ("max_time",),
        dict(
            type=duration,
            metavar="TIME",
            help="time budget of the run: seconds (5400) or with units (90s, 15m, 2h, 1h30m); training "
            "ends after the epoch during which it runs out (default: --epochs alone)",
        ),
    ),
    ("optimisation", "--batch_size", ("batch_size",), dict(type=int)),
    ("optimisation", "--milestones", ("lr_milestones",), dict(type=int, nargs="+")),
    ("speed and memory", "--compile", ("compile",), dict(action="store_true")),
    ("speed and memory", "--precision", ("precision",), dict(choices=parameter_options("precision"))),
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


def split_target(target) -> tuple[str, int | None]:
    return target if isinstance(target, tuple) else (target, None)


def flag_default(targets: tuple):
    """A flag's default: its parameters' defaults (lists where the flag takes several values)."""
    values = []
    for name, index in map(split_target, targets):
        value = DEFAULTS[name] if index is None else DEFAULTS[name][index]
        values.append(list(value) if isinstance(value, tuple) else value)
    return values[0] if len(values) == 1 else values


def flag_params(args: argparse.Namespace) -> dict:
    """The estimator parameters that the :data:`TRAIN_FLAGS` of parsed ``train`` arguments set."""
    params: dict = {}
    for _, flag, targets, _ in TRAIN_FLAGS:
        value = getattr(args, flag.lstrip("-"))
        for (name, index), part in zip(map(split_target, targets), value if len(targets) > 1 else [value]):
            if index is None:
                params[name] = tuple(part) if isinstance(part, list) else part
            else:
                params.setdefault(name, [None, None])[index] = part
    return {name: tuple(value) if isinstance(value, list) else value for name, value in params.items()}


#: the flag of each estimator parameter that has one, and of the data sets' ``image_size``: an error message
#: citing the parameter is shown with the flag
PARAM_FLAGS: dict[str, str] = {
    **{split_target(target)[0]: flag for _, flag, targets, _ in TRAIN_FLAGS for target in targets},
    "large_crop_scale": "--min_scale_crops/--max_scale_crops",
    "small_crop_scale": "--min_scale_crops/--max_scale_crops",
    "large_crop_size": "--size_crops",
    "small_crop_size": "--size_crops",
    "n_clusters": "--n_clusters",
    "cache_dir": "--cache_dir",
    "random_state": "--seed",
    "device": "--dev",
    "image_size": "--image_size",
}


def given_params(given: frozenset[str]) -> set[str]:
    """The names in :data:`PARAM_FLAGS` whose flags are among the destinations ``given`` (of the flags that a
    command line gives: ``parse_args(...).given``)."""
    return {
        name for name, flags in PARAM_FLAGS.items() if any(flag[2:] in given for flag in flags.split("/"))
    }
