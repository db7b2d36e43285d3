"""From the estimator's parameters to what training needs: checks, warnings, device, views, network and
schedule.

Each function reads the parameters of an :class:`~imc_cluster.IMCSwAVClustering` (the ``get_params()``
dict) and validates what :data:`PARAMETER_CONSTRAINTS` cannot express (the contents of tuples, crop sizes
against the images, the device), so that a bad value is reported before any work starts; settings that
would waste much of a fit on its data get a :class:`ConfigurationWarning`.
"""

from __future__ import annotations

import os
import sys
import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .augmentation import CropGroup, FeatureViews, MultiCropAugmenter
from .inputs import InputEncoder, check_image_shape, check_normalization
from .networks import RESNET_LAYOUTS, STEM_POOL_MIN_SIDE, IMCSwAVNet, MLPEncoder, ResNetEncoder
from .training import TrainingConfig

__all__ = [
    "LARGE_CROP_FRACTION",
    "SMALL_CROP_FRACTION",
    "ARCHITECTURE_PARAMS",
    "PARAMETER_CONSTRAINTS",
    "ConfigurationWarning",
    "default_crop_size",
    "check_params",
    "warn_about_run",
    "resolve_device",
    "crop_sizes",
    "augmenter",
    "architecture",
    "build_network",
    "training_config",
]

#: default crop sides as fractions of the image side (28/32 and 18/32 on CIFAR, 56/64 and 36/64 on
#: Tiny-ImageNet)
LARGE_CROP_FRACTION = 0.875
SMALL_CROP_FRACTION = 0.5625
#: the parameters that shape the network: a warm start must keep them
ARCHITECTURE_PARAMS = (
    "backbone",
    "backbone_width",
    "n_clusters",
    "n_prototypes",
    "projection_dim",
    "head_hidden_dim",
)

#: what scikit-learn checks of every parameter (``IMCSwAVClustering._parameter_constraints``)
PARAMETER_CONSTRAINTS: dict = {
    **dict.fromkeys(("n_clusters", "backbone_width", "projection_dim", "head_hidden_dim", "n_large_crops",
                     "sinkhorn_iterations", "max_epochs"), [Interval(Integral, 1, None, closed="left")]),
    **dict.fromkeys(("n_small_crops", "warmup_updates", "bn_recalibration_batches"),
                    [Interval(Integral, 0, None, closed="left")]),
    **dict.fromkeys(("n_prototypes", "batch_size"), [Interval(Integral, 2, None, closed="left")]),
    **dict.fromkeys(("large_crop_size", "small_crop_size"),
                    [Interval(Integral, 1, None, closed="left"), tuple, list, None]),
    **dict.fromkeys(("large_crop_scale", "small_crop_scale", "color_jitter", "betas", "lr_milestones"),
                    [tuple, list]),
    **dict.fromkeys(("image_shape", "normalization"), [tuple, list, None]),
    **dict.fromkeys(("flip_prob", "color_jitter_prob", "grayscale_prob"),
                    [Interval(Real, 0, 1, closed="both")]),
    **dict.fromkeys(("temperature", "sinkhorn_epsilon", "learning_rate", "lr_gamma"),
                    [Interval(Real, 0, None, closed="neither")]),
    **dict.fromkeys(("marginal_weight", "logit_penalty", "logit_threshold", "weight_decay"),
                    [Interval(Real, 0, None, closed="left")]),
    **dict.fromkeys(("warm_start", "compile", "activation_checkpointing"), ["boolean"]),
    "backbone": [StrOptions({"auto", "mlp", *RESNET_LAYOUTS})],
    "checkpoint_path": [str, os.PathLike, None],
    "device": [str],
    "precision": [StrOptions({"auto", "bfloat16", "float32"})],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}



def default_crop_size(fraction: float, height: int, width: int) -> tuple[int, int]:
    """The default ``(h, w)`` crop size: ``fraction`` of each axis of ``height x width`` images, rounded, at
    least 1."""
    return max(1, round(fraction * height)), max(1, round(fraction * width))


def _pair(name: str, value, low: float, high: float) -> tuple[float, float]:
    """Validate a (low, high) range parameter."""
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}.") from None
    if not low <= first <= second <= high:
        raise ValueError(f"{name} must satisfy {low} <= {name}[0] <= {name}[1] <= {high}, got {value!r}.")
    return first, second


def _crop_size_structure(name: str, value) -> tuple[int, int] | None:
    """A crop-size parameter (None, int or (h, w)) as a pair, or None."""
    if value is None:
        return None
    size = (value, value) if isinstance(value, Integral) else tuple(value)
    if len(size) != 2 or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in size
    ):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    return int(size[0]), int(size[1])


def check_params(params: dict) -> None:
    """Checks beyond ``_parameter_constraints``: the contents of tuple parameters, and the device."""
    _pair("large_crop_scale", params["large_crop_scale"], 1e-6, 1.0)
    _pair("small_crop_scale", params["small_crop_scale"], 1e-6, 1.0)
    _pair("betas", params["betas"], 0.0, 1.0 - 1e-12)
    jitter = tuple(params["color_jitter"])
    if (
        len(jitter) != 4
        or any(not isinstance(j, Real) or isinstance(j, bool) or j < 0 for j in jitter)
        or jitter[3] > 0.5
    ):
        raise ValueError(
            "color_jitter must be 4 non-negative numbers (brightness, contrast, saturation, "
            f"hue) with hue <= 0.5, got {params['color_jitter']!r}."
        )
    if any(not isinstance(m, Integral) or isinstance(m, bool) or m < 0 for m in params["lr_milestones"]):
        raise ValueError(
            f"lr_milestones must be non-negative epoch numbers, got {params['lr_milestones']!r}."
        )
    if params["n_large_crops"] + params["n_small_crops"] < 2:
        raise ValueError(
            "n_large_crops + n_small_crops must be at least 2 (SwAV predicts each large view's code "
            f"from the other views), got {params['n_large_crops']} + {params['n_small_crops']}."
        )
    check_image_shape(params["image_shape"])
    _crop_size_structure("large_crop_size", params["large_crop_size"])
    _crop_size_structure("small_crop_size", params["small_crop_size"])
    if params["normalization"] is not None:
        check_normalization(params["normalization"])
    resolve_device(params["device"])


class ConfigurationWarning(UserWarning):
    """Parameters that work, but waste much of a fit on its data (see :func:`warn_about_run`)."""


def warn_about_run(params: dict, n_samples: int) -> None:
    """A :class:`ConfigurationWarning`, pointing at the caller of ``fit``, for each setting that wastes a fit
    on ``n_samples`` samples: a warm-up longer than the whole run, more prototypes than samples, or a batch
    size that leaves more than a tenth of the samples out of every epoch."""
    batch = min(params["batch_size"], n_samples)
    steps, dropped = divmod(n_samples, batch)
    total = params["max_epochs"] * steps
    messages = []
    if params["warmup_updates"] > total:
        messages.append(
            f"warmup_updates={params['warmup_updates']} exceeds the updates of the whole run, {total} "
            f"(max_epochs={params['max_epochs']} x {steps} per epoch of batch_size={batch} on {n_samples} "
            "samples): the learning rate never reaches learning_rate and the prototypes never train; "
            "lower warmup_updates."
        )
    if params["n_prototypes"] > n_samples:
        messages.append(
            f"n_prototypes={params['n_prototypes']} exceeds the {n_samples} samples: the equipartitioned "
            "Sinkhorn codes leave most prototypes without any sample; use fewer prototypes."
        )
    if 10 * dropped > n_samples:
        better = n_samples // (steps + 1)
        messages.append(
            f"batch_size={params['batch_size']} leaves {dropped} of the {n_samples} samples "
            f"({dropped / n_samples:.0%}) out of every epoch, which has {steps} full batch(es) of {batch}; "
            f"e.g. batch_size={better} leaves {n_samples % better} out."
        )
    for message in messages:
        warnings.warn(message, ConfigurationWarning, stacklevel=_outside_package())


def _outside_package() -> int:
    """The ``stacklevel``, for a warning issued by the caller, of the first frame outside this package."""
    package = os.path.dirname(__file__) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def resolve_device(name: str) -> torch.device:
    """The device to run on, with its index on CUDA ("cuda" is the current CUDA device)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} was requested but CUDA is not available on this machine.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible.")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def crop_sizes(params: dict, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (large, small) crop sizes for ``height x width`` images, checked against them."""
    sizes = []
    for name, fraction in (
        ("large_crop_size", LARGE_CROP_FRACTION),
        ("small_crop_size", SMALL_CROP_FRACTION),
    ):
        size = _crop_size_structure(name, params[name]) or default_crop_size(fraction, height, width)
        if size[0] > height or size[1] > width:
            raise ValueError(f"{name}={params[name]!r} is larger than the {height}x{width} images.")
        sizes.append(size)
    return sizes[0], sizes[1]


def augmenter(params: dict, inputs: InputEncoder):
    """The generator of training views: multi-crop for images, feature corruption for vectors."""
    if not inputs.is_image:
        return FeatureViews(params["n_large_crops"], params["n_small_crops"])
    large, small = crop_sizes(params, *inputs.sample_shape[1:])
    groups = [CropGroup(params["n_large_crops"], large, tuple(params["large_crop_scale"]))]
    if params["n_small_crops"]:
        groups.append(CropGroup(params["n_small_crops"], small, tuple(params["small_crop_scale"])))
    return MultiCropAugmenter(
        groups,
        inputs.pixel_mean,
        inputs.pixel_std,
        flip_prob=params["flip_prob"],
        jitter=tuple(params["color_jitter"]),
        jitter_prob=params["color_jitter_prob"],
        grayscale_prob=params["grayscale_prob"],
    )


def architecture(params: dict, inputs: InputEncoder) -> dict:
    """The network the parameters give for these inputs, as plain data (saved in checkpoints)."""
    image = inputs.is_image
    return {
        "backbone": ("resnet18" if params["backbone"] == "auto" else params["backbone"]) if image else "mlp",
        "in_size": int(inputs.sample_shape[0]),
        "width": int(params["backbone_width"]),
        "stem_pool": bool(image and min(inputs.sample_shape[1:]) >= STEM_POOL_MIN_SIDE),
        **{name: int(params[name]) for name in ARCHITECTURE_PARAMS[2:]},
    }


def build_network(architecture: dict, seed: int = 0) -> IMCSwAVNet:
    """A freshly initialised network of ``architecture`` (from :func:`architecture`), seeded by ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture["backbone"] == "mlp":
            encoder = MLPEncoder(architecture["in_size"], architecture["width"])
        else:
            encoder = ResNetEncoder(
                architecture["backbone"],
                architecture["in_size"],
                architecture["width"],
                stem_pool=architecture["stem_pool"],
            )
        return IMCSwAVNet(
            encoder,
            architecture["n_clusters"],
            architecture["n_prototypes"],
            architecture["projection_dim"],
            architecture["head_hidden_dim"],
        )


def training_config(params: dict) -> TrainingConfig:
    """The optimisation and objective settings of the parameters."""
    return TrainingConfig(
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        betas=tuple(params["betas"]),
        weight_decay=params["weight_decay"],
        warmup_updates=params["warmup_updates"],
        lr_milestones=tuple(params["lr_milestones"]),
        lr_gamma=params["lr_gamma"],
        n_large_views=params["n_large_crops"],
        temperature=params["temperature"],
        sinkhorn_epsilon=params["sinkhorn_epsilon"],
        sinkhorn_iterations=params["sinkhorn_iterations"],
        marginal_weight=params["marginal_weight"],
        logit_penalty=params["logit_penalty"],
        logit_threshold=params["logit_threshold"],
    )
