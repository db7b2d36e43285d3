"""The estimator's parameters: what scikit-learn checks of each (:data:`PARAMETER_CONSTRAINTS`), the one
check of the structured ones (:func:`check_params`: the contents of tuples, the device), and the warnings of
settings that work but waste much of a fit on its data (:class:`ConfigurationWarning`).

Every default is the estimator's signature; every check is here or in the function it calls.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from imc_cluster.augmentation.crop_sizes import as_crop_size
from imc_cluster.augmentation.multicrop import check_color_jitter, check_normalization, check_scale
from imc_cluster.core.callers import user_stacklevel
from imc_cluster.core.numbers import is_integer, is_real, to_python
from imc_cluster.data.encoder import check_image_shape
from imc_cluster.model.networks import RESNET_LAYOUTS
from imc_cluster.model.pretrained import check_weights, parse_backbone

__all__ = [
    "checked_params",
    "check_n_clusters",
    "is_candidates",
    "OWN_BACKBONES",
    "frozen_encoder",
    "ARCHITECTURE_PARAMS",
    "PARAMETER_CONSTRAINTS",
    "ConfigurationWarning",
    "check_params",
    "warn_about_run",
]


#: the parameters that shape the network: a warm start must keep them
ARCHITECTURE_PARAMS = (
    "backbone",
    "freeze_encoder",
    "backbone_width",
    "n_clusters",
    "n_prototypes",
    "projection_dim",
    "head_hidden_dim",
    "n_heads",
)

#: what scikit-learn checks of every parameter (``IMCSwAVClustering._parameter_constraints``)
PARAMETER_CONSTRAINTS: dict = {
    **{
        key: [Interval(Integral, 1, None, closed="left")]
        for key in (
            "backbone_width",
            "projection_dim",
            "head_hidden_dim",
            "n_heads",
            "n_large_crops",
            "sinkhorn_iterations",
            "max_epochs",
        )
    },
    **{
        key: [Interval(Integral, 0, None, closed="left")]
        for key in ("n_small_crops", "warmup_updates", "bn_recalibration_batches")
    },
    # one K, or a sequence of candidate Ks (checked by check_n_clusters)
    "n_clusters": [Interval(Integral, 1, None, closed="left"), "array-like"],
    **{key: [Interval(Integral, 2, None, closed="left")] for key in ("n_prototypes", "batch_size")},
    **{
        key: [Interval(Integral, 1, None, closed="left"), "array-like", None]
        for key in ("large_crop_size", "small_crop_size")
    },
    **{
        key: ["array-like"]
        for key in ("large_crop_scale", "small_crop_scale", "color_jitter", "betas", "lr_milestones")
    },
    **{key: ["array-like", None] for key in ("image_shape", "normalization")},
    **{
        key: [Interval(Real, 0, 1, closed="both")]
        for key in ("flip_prob", "color_jitter_prob", "grayscale_prob")
    },
    **{
        key: [Interval(Real, 0, None, closed="neither")]
        for key in ("temperature", "sinkhorn_epsilon", "learning_rate", "lr_gamma")
    },
    **{
        key: [Interval(Real, 0, None, closed="left")]
        for key in ("marginal_weight", "logit_penalty", "logit_threshold", "weight_decay")
    },
    **{key: ["boolean"] for key in ("warm_start", "compile", "activation_checkpointing")},
    "backbone": [str],
    "weights": [str, os.PathLike, None],
    "freeze_encoder": ["boolean", StrOptions({"auto"})],
    "max_time": [Interval(Real, 0, None, closed="neither"), None],
    **{key: [str, os.PathLike, None] for key in ("checkpoint_path", "cache_dir")},
    "device": [str],
    "precision": [StrOptions({"auto", "bfloat16", "float32"})],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


def _pair(name: str, value, low: float, high: float) -> tuple[float, float]:
    """Validate a (low, high) range parameter."""
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}.") from None
    if not low <= first <= second <= high:
        raise ValueError(f"{name} must satisfy {low} <= {name}[0] <= {name}[1] <= {high}, got {value!r}.")
    return first, second


def checked_params(est) -> dict:
    """The parameters of ``est``, every one checked (scikit-learn's constraints, then :func:`check_params`),
    as plain Python values: numpy numbers and arrays (a grid search built from ``np.array`` gives them) read
    as Python numbers and lists."""
    for name, value in est.get_params().items():  # scikit-learn's own check fails on a Fraction, say
        if is_real(value) and not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be an int or a float (numpy's too), got {value!r}.")
    est._validate_params()
    params = to_python(est.get_params())
    check_params(params)
    params["n_clusters"] = check_n_clusters(params["n_clusters"], params["n_heads"])
    return params


def is_candidates(n_clusters) -> bool:
    """Whether a (checked) ``n_clusters`` is a sequence of candidate Ks rather than one K."""
    return isinstance(n_clusters, (tuple, list))


def check_n_clusters(value, n_heads: int) -> int | tuple[int, ...]:
    """``n_clusters`` as one int (>= 1), or its candidate Ks as a sorted tuple of ints: at least two distinct
    ints >= 2, each trained by ``n_heads`` heads (at least 2: the candidates are scored by the agreement
    between their heads, :func:`~imc_cluster.criteria.stability`).

    Raises
    ------
    TypeError
        When ``value`` is neither an int nor a flat sequence of ints (a bool, a float or a string, say).
    ValueError
        When a K is out of range, a candidate repeats, or fewer than two candidates (or heads) are given.
    """
    if is_integer(value):
        if value < 1:
            raise ValueError(f"n_clusters must be an int >= 1, got {value!r}.")
        return int(value)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise TypeError(
            f"n_clusters must be an int or a sequence of candidate ints (e.g. (5, 10, 20)), got {value!r}."
        )
    for item in value:
        if not is_integer(item):
            raise TypeError(f"n_clusters candidates must be ints, got {item!r} in {value!r}.")
    _check_candidates(list(value), n_heads)
    return tuple(sorted(int(k) for k in value))


def _check_candidates(candidates: list[int], n_heads: int) -> None:
    """At least two distinct candidates >= 2, and at least two heads to score each."""
    if len(candidates) < 2:
        raise ValueError(
            f"n_clusters as a sequence takes at least two candidate Ks to choose from, got {candidates!r}; "
            "give one K as an int."
        )
    if min(candidates) < 2:
        raise ValueError(f"every candidate of n_clusters must be an int >= 2, got {candidates!r}.")
    repeated = sorted({k for k in candidates if candidates.count(k) > 1})
    if repeated:
        raise ValueError(
            f"n_clusters repeats the candidate(s) {repeated}: give each K once, got {candidates!r}."
        )
    if n_heads < 2:
        raise ValueError(
            f"n_clusters={candidates!r} chooses K by the agreement between the heads of each candidate, "
            f"which needs n_heads >= 2 (e.g. n_heads=5), got n_heads={n_heads}."
        )


def check_params(params: dict) -> None:
    """Checks beyond ``_parameter_constraints``: no bool where a number goes, and the contents of tuple
    parameters (the device is resolved where it is used)."""
    for name, constraints in PARAMETER_CONSTRAINTS.items():
        numeric = name == "random_state" or any(isinstance(c, Interval) for c in constraints)
        if isinstance(params[name], bool) and numeric:
            raise ValueError(f"{name} must be a number, not a bool, got {params[name]!r}.")
    check_scale("large_crop_scale", params["large_crop_scale"])
    check_scale("small_crop_scale", params["small_crop_scale"])
    _pair("betas", params["betas"], 0.0, 1.0 - 1e-12)
    check_color_jitter(params["color_jitter"])
    milestones = list(params["lr_milestones"])
    if any(not is_integer(m) or m < 0 for m in milestones) or milestones != sorted(milestones):
        hint = f"; did you mean {sorted(milestones)}?" if all(map(is_integer, milestones)) else "."
        raise ValueError(
            f"lr_milestones must be non-negative epoch numbers in increasing order, got {milestones!r}{hint}"
        )
    if params["n_large_crops"] + params["n_small_crops"] < 2:
        raise ValueError(
            "n_large_crops + n_small_crops must be at least 2 (SwAV predicts each large view's code "
            f"from the other views), got {params['n_large_crops']} + {params['n_small_crops']}."
        )
    check_image_shape(params["image_shape"])
    _check_encoder(params)
    as_crop_size("large_crop_size", params["large_crop_size"])
    as_crop_size("small_crop_size", params["small_crop_size"])
    if params["normalization"] is not None:
        check_normalization(params["normalization"])


#: our own encoders; "auto" picks ResNet-18 for images and the MLP for vectors
OWN_BACKBONES = ("auto", "mlp", *RESNET_LAYOUTS)


def _check_encoder(params: dict) -> None:
    """The backbone (ours, or a library's ``"LIBRARY:NAME"``), its ``weights`` and ``freeze_encoder``."""
    backbone = params["backbone"]
    if parse_backbone(backbone) is None and backbone not in OWN_BACKBONES:
        raise ValueError(
            f"backbone must be one of {OWN_BACKBONES} or a pretrained network 'torchvision:NAME', "
            f"'timm:NAME' or 'open_clip:NAME', got {backbone!r}."
        )
    check_weights(params["weights"], backbone)
    if params["freeze_encoder"] is True and parse_backbone(backbone) is None:
        raise ValueError(
            f"freeze_encoder=True needs a pretrained backbone ('LIBRARY:NAME'); backbone={backbone!r} "
            "trains from scratch."
        )
    if params["normalization"] is not None and parse_backbone(backbone) is not None:
        raise ValueError(
            f"normalization is set, but the pretrained backbone {backbone!r} normalises its inputs as its "
            "library states; leave normalization at None."
        )


def frozen_encoder(params: dict) -> bool:
    """Whether the fit keeps the encoder as it is: ``freeze_encoder``, where "auto" freezes a pretrained
    network given weights."""
    if params["freeze_encoder"] == "auto":
        return parse_backbone(params["backbone"]) is not None and params["weights"] is not None
    return bool(params["freeze_encoder"])


class ConfigurationWarning(UserWarning):
    """Parameters that work, but waste much of a fit on its data (see :func:`warn_about_run`)."""


#: the kinds of configuration warning this process gave already: each is given once (a grid search fits
#: many estimators alike)
_WARNED: set[str] = set()


def warn_about_run(
    params: dict, n_samples: int, crops: tuple[tuple[int, int], tuple[int, int]] | None = None, ranks: int = 1
) -> None:
    """A :class:`ConfigurationWarning`, pointing at the caller of ``fit``, for each setting that wastes a fit
    on ``n_samples`` samples: a warm-up longer than the whole run, more prototypes than samples, a batch size
    that leaves more than a tenth of the samples out of every epoch (``ranks`` processes share each batch),
    one cluster, or small crops larger than the large ones (``crops``: the fit's (large, small) crop sizes).
    Each kind of warning is given once per process."""
    batch = min(params["batch_size"], n_samples)
    steps, dropped = divmod(n_samples, batch)
    total = params["max_epochs"] * steps
    messages = {}
    if params["warmup_updates"] > total:
        messages["warmup"] = (
            f"warmup_updates={params['warmup_updates']} exceeds the updates of the whole run, {total} "
            f"(max_epochs={params['max_epochs']} x {steps} per epoch of batch_size={batch} on {n_samples} "
            "samples): the learning rate never reaches learning_rate and the prototypes never train; "
            "lower warmup_updates."
        )
    if params["n_prototypes"] > n_samples:
        messages["prototypes"] = (
            f"n_prototypes={params['n_prototypes']} exceeds the {n_samples} samples: the equipartitioned "
            "Sinkhorn codes leave most prototypes without any sample; use fewer prototypes."
        )
    if 10 * dropped > n_samples:
        # the largest batch size below the one given, a multiple of the processes, that drops at most a tenth
        fits = [b for b in range(batch, 1, -1) if b % ranks == 0 and 10 * (n_samples % b) <= n_samples]
        shared = f" (a multiple of the {ranks} processes)" if ranks > 1 else ""
        advice = f"; e.g. batch_size={fits[0]}{shared} leaves {n_samples % fits[0]} out" if fits else ""
        messages["dropped"] = (
            f"batch_size={params['batch_size']} leaves {dropped} of the {n_samples} samples "
            f"({dropped / n_samples:.0%}) out of every epoch, which has {steps} full batch(es) of {batch}"
            f"{advice}."
        )
    if params["n_clusters"] == 1:
        messages["one cluster"] = (
            "n_clusters=1: every sample falls in the one cluster, and the cluster head has nothing to learn; "
            "use n_clusters >= 2 to find groups."
        )
    if crops is not None and crops[1][0] * crops[1][1] > crops[0][0] * crops[0][1]:
        messages["crops"] = (
            f"the small crops ({crops[1][0]}x{crops[1][1]}) are larger than the large ones "
            f"({crops[0][0]}x{crops[0][1]}): SwAV predicts the large views' codes from smaller views; check "
            "large_crop_size and small_crop_size."
        )
    for kind, message in messages.items():
        if kind not in _WARNED:
            _WARNED.add(kind)
            warnings.warn(message, ConfigurationWarning, stacklevel=user_stacklevel())
