"""The scikit-learn estimator: :class:`IMCSwAVClustering`."""

from __future__ import annotations

import contextlib
import copy
import os
from numbers import Integral, Real

import numpy as np
import torch
from filelock import FileLock, Timeout
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from . import data as data_lib
from .augmentation import CropGroup, FeatureViews, MultiCropAugmenter, normalize
from .metrics import cluster_accuracy, evaluate_clustering
from .networks import RESNET_LAYOUTS, STEM_POOL_MIN_SIDE, IMCSwAVNet, MLPEncoder, ResNetEncoder
from .persistence import CheckpointError, check_writable, load_checkpoint, save_checkpoint
from .training import LOSS_TERMS, DivergenceError, Trainer, TrainingConfig, recalibrate_batch_norm

__all__ = ["IMCSwAVClustering"]

#: default crop sides as fractions of the image side (28/32 and 18/32 on CIFAR, 56/64 and 36/64 on Tiny-ImageNet)
LARGE_CROP_FRACTION = 0.875
SMALL_CROP_FRACTION = 0.5625


def _pair(name: str, value, low: float, high: float) -> tuple[float, float]:
    """Validate a (low, high) range parameter."""
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}.") from None
    if not low <= first <= second <= high:
        raise ValueError(f"{name} must satisfy {low} <= {name}[0] <= {name}[1] <= {high}, got {value!r}.")
    return first, second


def default_crop_size(fraction: float, height: int, width: int) -> tuple[int, int]:
    """The default ``(h, w)`` crop size: ``fraction`` of each axis of ``height x width`` images, rounded, at
    least 1."""
    return max(1, round(fraction * height)), max(1, round(fraction * width))


def _crop_size(name: str, value, fraction: float, height: int, width: int) -> tuple[int, int]:
    """Resolve a crop-size parameter (None, int or (h, w)) against the image size."""
    if value is None:
        return default_crop_size(fraction, height, width)
    size = (value, value) if isinstance(value, Integral) else tuple(value)
    if len(size) != 2 or not all(isinstance(s, Integral) and s >= 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}.")
    if size[0] > height or size[1] > width:
        raise ValueError(f"{name}={value!r} is larger than the {height}x{width} images.")
    return int(size[0]), int(size[1])


def _normalization(value) -> tuple[list[float], list[float]]:
    """Validate a ``normalization`` parameter: (mean, std), equally long, finite, std > 0."""
    try:
        mean, std = ([float(v) for v in part] for part in value)
    except (TypeError, ValueError):
        mean = std = []
    if not mean or len(mean) != len(std) or not np.isfinite(mean + std).all() or min(std) <= 0:
        raise ValueError("normalization must be a pair (mean, std) of equally long sequences of finite numbers "
                         f"(one per image channel) with std > 0, got {value!r}.")
    return mean, std


def _library_version() -> str:
    from . import __version__

    return __version__


def _plain(value):
    """A checkpoint-safe form of a parameter or fitted attribute: numpy values become tensors or Python
    scalars, tuples lists, path-likes strings."""
    if isinstance(value, np.ndarray):
        return value.tolist() if value.dtype.kind in "OUS" else torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


#: fitted attributes stored as tuples, and those stored as numpy arrays
_TUPLE_ATTRIBUTES = ("input_shape_", "pixel_range_")
_ARRAY_ATTRIBUTES = ("feature_mean_", "feature_scale_", "labels_", "feature_names_in_")


def _from_plain(name: str, value):
    if name in _TUPLE_ATTRIBUTES:
        return tuple(value)
    if name in _ARRAY_ATTRIBUTES:
        return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=object)
    return value


def _to_cpu(state: dict) -> dict:
    """``state`` with every tensor, at any depth, moved to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


def _head_mask(head_mask, n_samples: int) -> torch.Tensor | None:
    """The validated ``head_mask`` as a bool tensor, or None."""
    if head_mask is None:
        return None
    mask = np.asarray(head_mask)
    if mask.dtype != bool or mask.shape != (n_samples,):
        raise ValueError(f"head_mask must be a boolean array with one entry per sample ({n_samples}), got "
                         f"dtype {mask.dtype} and shape {mask.shape}.")
    if not mask.any():
        raise ValueError("head_mask selects no sample: the cluster head needs at least one.")
    return torch.from_numpy(mask.copy())


def _ndim(X) -> int:
    """Dimensions of array-like ``X`` without converting arrays; 2 when numpy cannot tell (ragged lists),
    leaving the error to input validation."""
    if hasattr(X, "ndim"):
        return int(X.ndim)
    try:
        return np.asarray(X).ndim
    except ValueError:
        return 2


class IMCSwAVClustering(TransformerMixin, ClusterMixin, BaseEstimator):
    """Deep clustering by IMC-SwAV: SwAV self-labelling plus a mutual-information cluster head.

    A ResNet (or, for plain feature vectors, an MLP) encoder is trained with SwAV's swapped prediction
    of Sinkhorn-Knopp codes over prototypes, on multi-crop views of each image. In the same phase a
    cluster head on the detached encoder feature learns ``n_clusters`` clusters by maximising the mutual
    information between its output and the prototype assignments of every view. Defaults follow the
    published method (Ntelemis, Jin and Thomas, 2022).

    Parameters
    ----------
    n_clusters : int, default=10
        Number of clusters ``K``.
    backbone : {"auto", "resnet18", "resnet34", "resnet50", "mlp"}, default="auto"
        Encoder. "auto" picks ResNet-18 for images and the MLP for plain feature vectors.
    image_shape : tuple of int, default=None
        Shape ``(H, W)`` or ``(H, W, C)`` of the images when ``X`` is 2-D with one flattened image per row
        (C-order flattening of ``(H, W, C)``). One entry may be -1 (inferred). Leave None for 3-D/4-D
        image arrays, Datasets and plain feature vectors.
    backbone_width : int, default=64
        Channels of the ResNet's first stage (stages have 1, 2, 4 and 8 times as many); the MLP's hidden
        width is 8 times this. Smaller values give smaller, faster networks.
    n_prototypes : int, default=1000
        Number of SwAV prototypes ``K'``.
    projection_dim : int, default=128
        Dimension of the projection that is scored against the prototypes.
    head_hidden_dim : int, default=1024
        Width of the cluster head's hidden layers.
    n_large_crops, n_small_crops : int, default=2, 4
        Views per image. The large views give the Sinkhorn targets.
    large_crop_size, small_crop_size : int or (int, int), default=None
        Output sizes of the crops; None gives 0.875 and 0.5625 of the image side (28 and 18 on 32x32).
    large_crop_scale, small_crop_scale : (float, float), default=(0.2, 1.0), (0.08, 0.4)
        Range of crop area as a fraction of the image.
    flip_prob : float, default=0.5
        Probability of a horizontal flip per view (set 0 for data where mirroring changes the class).
    color_jitter : (float, float, float, float), default=(0.4, 0.4, 0.4, 0.1)
        Brightness, contrast, saturation and hue strength.
    color_jitter_prob : float, default=0.8
        Probability that a view is colour-jittered.
    grayscale_prob : float, default=0.25
        Probability that a view is turned grey.
    normalization : (sequence of float, sequence of float), default=None
        Per-channel ``(mean, std)`` of pixel values in [0, 1] with which images are normalised, one entry
        per channel (e.g. the published CIFAR-10 constants, which ``imc-cluster train --dataset c10`` uses).
        None computes them from the training images. Ignored for feature vectors, which are standardised.
    temperature : float, default=0.1
        Softmax temperature ``tau`` of the prototype assignments.
    sinkhorn_epsilon : float, default=0.05
        Entropic regularisation of Sinkhorn-Knopp.
    sinkhorn_iterations : int, default=3
        Sinkhorn-Knopp iterations.
    marginal_weight : float, default=4.0
        Weight ``b`` of the cluster-marginal entropy in the mutual-information loss.
    logit_penalty : float, default=0.01
        Weight ``a`` of the penalty on cluster logits larger than ``logit_threshold``.
    logit_threshold : float, default=5.0
        Logit magnitude above which the penalty applies.
    batch_size : int, default=256
        Images per optimiser update (capped at the number of samples).
    max_epochs : int, default=500
        Training epochs.
    learning_rate : float, default=5e-4
        Adam's learning rate after warm-up.
    betas : (float, float), default=(0.8, 0.999)
        Adam's betas.
    weight_decay : float, default=1e-5
        Adam's (L2) weight decay.
    warmup_updates : int, default=500
        Updates of linear learning-rate warm-up; the prototypes are frozen meanwhile.
    lr_milestones : tuple of int, default=(150, 300, 400)
        Epochs at which the learning rate is multiplied by ``lr_gamma``.
    lr_gamma : float, default=0.4
        Learning-rate decay factor.
    bn_recalibration_batches : int, default=50
        Batches of un-augmented training data on which the BatchNorm statistics are re-estimated before
        evaluation and after training; 0 keeps the running statistics of training.
    warm_start : bool, default=False
        When True and the estimator is fitted (or loaded from a checkpoint), ``fit`` continues training
        from where it stopped, with the optimiser, schedule and random state restored, until ``n_iter_``
        reaches ``max_epochs`` (raise ``max_epochs`` to train longer). The data must be shaped like
        the first fit's.
    checkpoint_path : str or path-like, default=None
        When given, a checkpoint (see :meth:`save`) is written there atomically after every epoch, so an
        interrupted fit resumes with :meth:`load` and ``warm_start=True``.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". On CUDA, training uses bf16 autocast (the
        Sinkhorn codes and losses stay in float32) and channels-last images; the uint8 data live on the GPU
        when they fit in half its free memory, else in pinned host memory.
    compile : bool, default=False
        Train through ``torch.compile`` (opt-in: the first epoch pays the compilation; pays off on GPUs
        for long runs).
    precision : {"auto", "bfloat16", "float32"}, default="auto"
        Arithmetic of the networks in training (bf16 autocast keeps float32 weights, and the Sinkhorn codes
        and losses stay in float32). "auto" is bf16 on CUDA and float32 on the CPU. "bfloat16" on a CPU
        with AVX512-BF16 or AMX halves the activation memory and nearly doubles the speed of ResNet
        training (benchmarks/speed.py), but oneDNN's bf16 kernels can give non-finite gradients on tiny
        networks and images, so it is opt-in there. Inference runs in bf16 on CUDA (unless "float32")
        and in float32 on the CPU.
    activation_checkpointing : bool, default=False
        Keep only the input of the stem and of each residual block in training, and recompute them in the
        backward pass: ResNet activation memory shrinks several-fold for about a third more compute. For
        large batches on small machines.
    random_state : int, RandomState instance or None, default=None
        Seed of weight initialisation, shuffling and augmentation. Fit is deterministic on the CPU for
        a fixed seed.
    verbose : int, default=0
        0 prints nothing; 1 shows a progress bar with the running losses.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of every training sample.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One record per epoch: loss terms, learning rate, seconds, images per second, and ACC/NMI/ARI with
        ``eval_set``.
    device_ : torch.device
        Device the model lives on.
    model_ : IMCSwAVNet
        The trained network.
    n_features_in_ : int
        Values per sample seen in fit.
    input_shape_ : tuple of int
        ``(C, H, W)`` of the images, or ``(n_features,)`` for vectors.
    training_state_ : dict
        Optimiser state, update and epoch counters, and random state: what ``warm_start`` resumes from.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imc_cluster import IMCSwAVClustering
    >>> X, y = load_digits(return_X_y=True)
    >>> est = IMCSwAVClustering(n_clusters=10, image_shape=(8, 8), max_epochs=2, random_state=0)
    >>> labels = est.fit_predict(X)
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "backbone": [StrOptions({"auto", "mlp", *RESNET_LAYOUTS})],
        "image_shape": [tuple, list, None],
        "backbone_width": [Interval(Integral, 1, None, closed="left")],
        "n_prototypes": [Interval(Integral, 2, None, closed="left")],
        "projection_dim": [Interval(Integral, 1, None, closed="left")],
        "head_hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "n_large_crops": [Interval(Integral, 1, None, closed="left")],
        "n_small_crops": [Interval(Integral, 0, None, closed="left")],
        "large_crop_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "small_crop_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "large_crop_scale": [tuple, list],
        "small_crop_scale": [tuple, list],
        "flip_prob": [Interval(Real, 0, 1, closed="both")],
        "color_jitter": [tuple, list],
        "color_jitter_prob": [Interval(Real, 0, 1, closed="both")],
        "grayscale_prob": [Interval(Real, 0, 1, closed="both")],
        "normalization": [tuple, list, None],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_epsilon": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_iterations": [Interval(Integral, 1, None, closed="left")],
        "marginal_weight": [Interval(Real, 0, None, closed="left")],
        "logit_penalty": [Interval(Real, 0, None, closed="left")],
        "logit_threshold": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "betas": [tuple, list],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_updates": [Interval(Integral, 0, None, closed="left")],
        "lr_milestones": [tuple, list],
        "lr_gamma": [Interval(Real, 0, None, closed="neither")],
        "bn_recalibration_batches": [Interval(Integral, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "checkpoint_path": [str, os.PathLike, None],
        "device": [str],
        "compile": ["boolean"],
        "precision": [StrOptions({"auto", "bfloat16", "float32"})],
        "activation_checkpointing": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        backbone: str = "auto",
        image_shape: tuple[int, ...] | None = None,
        backbone_width: int = 64,
        n_prototypes: int = 1000,
        projection_dim: int = 128,
        head_hidden_dim: int = 1024,
        n_large_crops: int = 2,
        n_small_crops: int = 4,
        large_crop_size: int | tuple[int, int] | None = None,
        small_crop_size: int | tuple[int, int] | None = None,
        large_crop_scale: tuple[float, float] = (0.2, 1.0),
        small_crop_scale: tuple[float, float] = (0.08, 0.4),
        flip_prob: float = 0.5,
        color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        color_jitter_prob: float = 0.8,
        grayscale_prob: float = 0.25,
        normalization: tuple | None = None,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        marginal_weight: float = 4.0,
        logit_penalty: float = 0.01,
        logit_threshold: float = 5.0,
        batch_size: int = 256,
        max_epochs: int = 500,
        learning_rate: float = 5e-4,
        betas: tuple[float, float] = (0.8, 0.999),
        weight_decay: float = 1e-5,
        warmup_updates: int = 500,
        lr_milestones: tuple[int, ...] = (150, 300, 400),
        lr_gamma: float = 0.4,
        bn_recalibration_batches: int = 50,
        warm_start: bool = False,
        checkpoint_path: str | None = None,
        device: str = "auto",
        compile: bool = False,
        precision: str = "auto",
        activation_checkpointing: bool = False,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.image_shape = image_shape
        self.backbone_width = backbone_width
        self.n_prototypes = n_prototypes
        self.projection_dim = projection_dim
        self.head_hidden_dim = head_hidden_dim
        self.n_large_crops = n_large_crops
        self.n_small_crops = n_small_crops
        self.large_crop_size = large_crop_size
        self.small_crop_size = small_crop_size
        self.large_crop_scale = large_crop_scale
        self.small_crop_scale = small_crop_scale
        self.flip_prob = flip_prob
        self.color_jitter = color_jitter
        self.color_jitter_prob = color_jitter_prob
        self.grayscale_prob = grayscale_prob
        self.normalization = normalization
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.marginal_weight = marginal_weight
        self.logit_penalty = logit_penalty
        self.logit_threshold = logit_threshold
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.betas = betas
        self.weight_decay = weight_decay
        self.warmup_updates = warmup_updates
        self.lr_milestones = lr_milestones
        self.lr_gamma = lr_gamma
        self.bn_recalibration_batches = bn_recalibration_batches
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.device = device
        self.compile = compile
        self.precision = precision
        self.activation_checkpointing = activation_checkpointing
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        """Checks beyond ``_parameter_constraints``: contents of tuple parameters and the device."""
        self._validate_params()
        _pair("large_crop_scale", self.large_crop_scale, 1e-6, 1.0)
        _pair("small_crop_scale", self.small_crop_scale, 1e-6, 1.0)
        _pair("betas", self.betas, 0.0, 1.0 - 1e-12)
        jitter = tuple(self.color_jitter)
        if len(jitter) != 4 or any(not isinstance(j, Real) or j < 0 for j in jitter) or jitter[3] > 0.5:
            raise ValueError("color_jitter must be 4 non-negative numbers (brightness, contrast, saturation, "
                             f"hue) with hue <= 0.5, got {self.color_jitter!r}.")
        if self.normalization is not None:
            _normalization(self.normalization)
        if any(not isinstance(m, Integral) or m < 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be non-negative epoch numbers, got {self.lr_milestones!r}.")
        self._resolve_device()

    def _resolve_device(self) -> torch.device:
        """The device to train on, with its index on CUDA ("cuda" is the current CUDA device)."""
        name = self.device
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

    # ------------------------------------------------------------------ data

    def _prepare(self, X, reset: bool) -> data_lib.PreparedData:
        """Validate ``X`` and turn it into images (uint8) or standardised vectors (float32)."""
        if data_lib.is_dataset(X):
            return self._finish_images(data_lib.check_images(data_lib.images_from_dataset(X)), reset)
        if _ndim(X) > 2:
            images = data_lib.check_images(np.asarray(X))
            if images.dtype.kind not in "uif":
                raise TypeError(f"Image arrays must be numeric, got dtype {images.dtype}.")
            return self._finish_images(data_lib.images_from_array(images, None), reset)
        array = validate_data(self, X, reset=reset, dtype="numeric", ensure_min_samples=1)
        if array.dtype.kind not in "uif":
            array = array.astype(np.float64)
        if self.image_shape is not None:
            if self.backbone == "mlp":
                raise ValueError("backbone='mlp' takes feature vectors; set image_shape=None, or use a ResNet "
                                 "backbone for images.")
            return self._finish_images(data_lib.images_from_array(array, self.image_shape), reset)
        if reset and self.backbone not in ("auto", "mlp"):
            raise ValueError(f"backbone={self.backbone!r} needs images: pass 3-D/4-D image arrays, a Dataset, "
                             "or set image_shape for flattened images.")
        if not reset and self.input_shape_ != (array.shape[1],):
            raise ValueError(f"X holds feature vectors, but the estimator was fitted on images "
                             f"{self.input_shape_}; pass images shaped like the training data.")
        return self._finish_vectors(array, reset)

    def _finish_images(self, images: np.ndarray, reset: bool) -> data_lib.PreparedData:
        if images.shape[1] not in (1, 3):
            raise ValueError(f"Images must have 1 or 3 channels, got {images.shape[1]}.")
        if reset:
            self.input_shape_ = tuple(int(s) for s in images.shape[1:])
            self.n_features_in_ = int(np.prod(self.input_shape_))
            self.pixel_range_ = data_lib.pixel_range(images)
        elif getattr(self, "input_shape_", None) != tuple(images.shape[1:]):
            raise ValueError(f"X holds images of shape (C, H, W) = {tuple(images.shape[1:])}, but the estimator "
                             f"was fitted on {self.input_shape_}.")
        return data_lib.PreparedData(data_lib.as_tensor(data_lib.to_uint8(images, self.pixel_range_)),
                                     is_image=True)

    def _finish_vectors(self, array: np.ndarray, reset: bool) -> data_lib.PreparedData:
        array = np.asarray(array, dtype=np.float32)
        if reset:
            self.input_shape_ = (array.shape[1],)
            self.feature_mean_ = array.mean(axis=0)
            scale = array.std(axis=0)
            self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
        values = torch.from_numpy((array - self.feature_mean_) / self.feature_scale_)
        return data_lib.PreparedData(values, is_image=False)

    # ------------------------------------------------------------------ model

    def _build_model(self, sample_shape: tuple[int, ...], is_image: bool, seed: int) -> IMCSwAVNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if is_image:
                channels, height, width = sample_shape
                depth = "resnet18" if self.backbone == "auto" else self.backbone
                encoder = ResNetEncoder(depth, channels, self.backbone_width,
                                        stem_pool=min(height, width) >= STEM_POOL_MIN_SIDE)
            else:
                encoder = MLPEncoder(sample_shape[0], self.backbone_width)
            return IMCSwAVNet(encoder, self.n_clusters, self.n_prototypes, self.projection_dim,
                              self.head_hidden_dim)

    def _augmenter(self, values: torch.Tensor, is_image: bool):
        """The generator of training views."""
        if not is_image:
            return FeatureViews(self.n_large_crops, self.n_small_crops)
        channels, height, width = values.shape[1:]
        large = _crop_size("large_crop_size", self.large_crop_size, LARGE_CROP_FRACTION, height, width)
        small = _crop_size("small_crop_size", self.small_crop_size, SMALL_CROP_FRACTION, height, width)
        groups = [CropGroup(self.n_large_crops, large, tuple(self.large_crop_scale))]
        if self.n_small_crops:
            groups.append(CropGroup(self.n_small_crops, small, tuple(self.small_crop_scale)))
        return MultiCropAugmenter(groups, self.pixel_mean_, self.pixel_std_, flip_prob=self.flip_prob,
                                  jitter=tuple(self.color_jitter), jitter_prob=self.color_jitter_prob,
                                  grayscale_prob=self.grayscale_prob)

    def _eval_transform(self, batch: torch.Tensor) -> torch.Tensor:
        """The evaluation input: normalised images, or the (already standardised) vectors."""
        if len(self.input_shape_) == 3:
            return normalize(batch, self.pixel_mean_, self.pixel_std_)
        return batch

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, eval_set=None, callbacks=None, head_mask=None):
        """Train the network and the cluster head on ``X``.

        Parameters
        ----------
        X : array-like or torch Dataset
            Images as ``(N, H, W, C)``, ``(N, C, H, W)`` or ``(N, H, W)`` arrays (uint8 or float), rows of
            flattened images with ``image_shape``, plain feature vectors ``(N, F)``, or a Dataset of
            images or (image, target) pairs (PIL images or tensors; PIL modes "1", "L" and "LA" are read as
            one grey channel, others as RGB, and grey images among RGB ones are repeated over three channels).
        y : Ignored
            Not used, present for API consistency.
        eval_set : tuple (X_val, y_val), default=None
            Labelled data on which ACC, NMI and ARI are reported after every epoch (in ``history_``).
        callbacks : sequence of callable, default=None
            Each is called after every epoch as ``callback(estimator, record)`` with that epoch's
            ``history_`` record (after the checkpoint is written).
        head_mask : array-like of bool, shape (n_samples,), default=None
            Samples the cluster head trains on (all by default); the encoder and prototypes learn from
            every sample. For STL-10, the labelled images: the head's mutual information is then
            estimated on the masked samples of each batch.

        Returns
        -------
        self : IMCSwAVClustering
            The fitted estimator.

        Raises
        ------
        DivergenceError
            When a loss becomes NaN or infinite. The estimator is then left as it was after the last
            complete epoch (and as before ``fit`` when the first epoch diverged); the checkpoint, if any,
            still holds that last good epoch.
        """
        previous = dict(self.__dict__)
        # a warm start trains model_ in place: keep its weights to put back if the fit fails
        weights = copy.deepcopy(self.model_.state_dict()) if self.warm_start and hasattr(self, "model_") else None
        try:
            return self._fit(X, eval_set, list(callbacks or ()), head_mask)
        except DivergenceError:
            if getattr(self, "n_iter_", 0) <= previous.get("n_iter_", 0):
                self._restore(previous, weights)
            raise
        except BaseException:
            self._restore(previous, weights)  # a failed fit leaves a previously fitted estimator as it was
            raise

    def _restore(self, previous: dict, weights: dict | None) -> None:
        """Put back the attributes of ``previous`` and, after a warm start, the model's weights and device."""
        self.__dict__.clear()
        self.__dict__.update(previous)
        if weights is not None:
            self.model_.load_state_dict(weights)
            self.model_.to(self.device_)

    def _fit(self, X, eval_set, callbacks, head_mask):
        self._check_params()
        resume = bool(self.warm_start) and hasattr(self, "model_")
        data = self._prepare(X, reset=not resume)
        n_samples = data.values.shape[0]
        if n_samples < max(2, self.n_clusters):
            raise ValueError(f"n_samples={n_samples} should be >= n_clusters={self.n_clusters} (and >= 2).")
        evaluation = self._prepare_eval_set(eval_set)
        head_mask = _head_mask(head_mask, n_samples)
        if self.checkpoint_path is not None:
            check_writable(self.checkpoint_path)
        self.device_ = self._resolve_device()
        if resume:
            self.model_.to(self.device_)
        else:
            self._initialize(data)
        trainer = self._trainer(data)
        values = data_lib.place(data.values, self.device_)
        if head_mask is not None:
            head_mask = head_mask.to(values.device)
        steps = trainer.steps_per_epoch(n_samples)
        remaining = max(0, self.max_epochs - trainer.epoch)
        with self._checkpoint_lock(), tqdm(total=remaining * steps, disable=not self.verbose, desc="IMC-SwAV",
                                           unit="step") as bar:
            good = None  # until an epoch completes, fit() itself puts the estimator back as it was
            for _ in range(remaining):
                try:
                    record = trainer.train_epoch(values, self._progress(bar, steps) if self.verbose else None,
                                                 head_mask)
                except DivergenceError:
                    if good is not None:
                        self._rollback(trainer, good)
                        self._finish(values)
                    raise
                if evaluation is not None:
                    self._recalibrate(values)
                    record.update(self._evaluate(*evaluation))
                self._end_epoch(trainer, record)
                good = self._snapshot(trainer)
                bar.set_postfix(self._postfix(record))
                for callback in callbacks:
                    callback(self, record)
            # the last epoch's evaluation already recalibrated the model that fit returns
            self._finish(values, recalibrate=evaluation is None or remaining == 0)
            if self.checkpoint_path is not None:
                self.save(self.checkpoint_path)
        return self

    def _finish(self, values: torch.Tensor, recalibrate: bool = True) -> None:
        """Evaluation-ready BatchNorm statistics and the training labels."""
        if recalibrate:
            self._recalibrate(values)
        self.labels_ = self._logits(values).argmax(dim=1).numpy().astype(np.int64)

    def _checkpoint_lock(self):
        """Hold ``checkpoint_path + ".lock"`` for the whole fit, so that two processes never write the same
        checkpoint; a second one fails at once."""
        if self.checkpoint_path is None:
            return contextlib.nullcontext()
        lock = FileLock(os.fspath(self.checkpoint_path) + ".lock", timeout=0)
        try:
            return lock.acquire()  # a context manager that releases the lock on exit
        except Timeout:
            raise ValueError(f"Another process is training into {self.checkpoint_path} (its lock "
                             f"{lock.lock_file} is held); choose another checkpoint path.") from None

    def _initialize(self, data: data_lib.PreparedData) -> None:
        """Fresh model, statistics and training state for a new fit."""
        if data.is_image:
            self.pixel_mean_, self.pixel_std_ = self._pixel_statistics(data.values)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.model_ = self._build_model(data.sample_shape, data.is_image, seed).to(self.device_)
        generator = torch.Generator(self.device_).manual_seed(seed)
        self.training_state_ = {"updates": 0, "epoch": 0, "generator": generator.get_state(),
                                "generator_device": self.device_.type, "seed": seed}
        self.history_, self.n_iter_ = [], 0

    def _pixel_statistics(self, images: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per-channel (mean, std) of the normalisation: the ``normalization`` parameter, validated against
        the images' channels, or the statistics of ``images``."""
        if self.normalization is None:
            return data_lib.channel_statistics(images)
        mean, std = _normalization(self.normalization)
        if len(mean) != images.shape[1]:
            raise ValueError(f"normalization has {len(mean)} entries per statistic, but the images have "
                             f"{images.shape[1]} channel(s).")
        return mean, std

    def _trainer(self, data: data_lib.PreparedData) -> Trainer:
        """A trainer for ``model_``, in the state ``training_state_`` records."""
        state = self.training_state_
        generator = torch.Generator(self.device_)
        if state["generator_device"] == self.device_.type:
            generator.set_state(state["generator"])
        else:  # random streams do not transfer between device types: continue on a derived seed
            generator.manual_seed(state["seed"] + state["updates"])
        cuda = self.device_.type == "cuda"
        if cuda and data.is_image:
            self.model_.to(memory_format=torch.channels_last)
        if isinstance(self.model_.encoder, ResNetEncoder):
            self.model_.encoder.checkpointing = self.activation_checkpointing
        trainer = Trainer(self.model_, self._augmenter(data.values, data.is_image), self._training_config(),
                          generator, autocast_dtype=self._training_dtype(),
                          channels_last=cuda and data.is_image, compile=self.compile)
        if "optimizer" in state:
            trainer.load_state_dict(state)
        return trainer

    def _training_dtype(self) -> torch.dtype | None:
        """The autocast dtype of training (None for float32), as ``precision`` asks."""
        if self.precision == "float32":
            return None
        return torch.bfloat16 if self.precision == "bfloat16" or self.device_.type == "cuda" else None

    def _snapshot(self, trainer: Trainer) -> dict:
        """What to roll back to if the next epoch diverges: the checkpoint just written, when there is one
        (no copy in memory), else copies of the model and of the training state."""
        if self.checkpoint_path is not None:
            return {"checkpoint": self.checkpoint_path}
        return {"model": copy.deepcopy(self.model_.state_dict()), "trainer": copy.deepcopy(trainer.state_dict()),
                "generator": trainer.generator.get_state()}

    def _rollback(self, trainer: Trainer, good: dict) -> None:
        if "checkpoint" in good:
            payload = load_checkpoint(good["checkpoint"])
            good = {"model": payload["model"], "trainer": payload["training"],
                    "generator": payload["training"]["generator"]}
        self.model_.load_state_dict(good["model"])
        trainer.load_state_dict(good["trainer"])
        trainer.generator.set_state(good["generator"])
        self.n_iter_ = trainer.epoch
        self._keep_training_state(trainer)  # the optimiser state recorded before aliased the diverged one

    def _end_epoch(self, trainer: Trainer, record: dict) -> None:
        """Record the epoch, remember the training state, and write the checkpoint."""
        self.history_ = [*self.history_, record]  # a new list: a failed warm start puts the old one back
        self.n_iter_ = trainer.epoch
        self._keep_training_state(trainer)
        if self.checkpoint_path is not None:
            self.save(self.checkpoint_path)

    def _keep_training_state(self, trainer: Trainer) -> None:
        """Record the trainer's state (optimiser, counters, random state) in ``training_state_``."""
        self.training_state_ = {**trainer.state_dict(), "generator": trainer.generator.get_state(),
                                "generator_device": self.device_.type, "seed": self.training_state_["seed"]}

    @staticmethod
    def _postfix(record: dict) -> dict[str, str]:
        shown = ("epoch", *LOSS_TERMS, "acc")
        return {key: f"{value:.3f}" if isinstance(value, float) else str(value)
                for key, value in record.items() if key in shown}

    def _progress(self, bar: tqdm, steps: int):
        """Per-step progress: advance the bar, and show the running losses about 10 times an epoch (each
        read waits for the device)."""
        every = max(1, steps // 10)

        def on_step(step: int, means: torch.Tensor) -> None:
            bar.update()
            if (step + 1) % every == 0:
                bar.set_postfix(self._postfix(dict(zip(LOSS_TERMS, means.tolist()))))

        return on_step

    def _training_config(self) -> TrainingConfig:
        return TrainingConfig(
            batch_size=self.batch_size, learning_rate=self.learning_rate, betas=tuple(self.betas),
            weight_decay=self.weight_decay, warmup_updates=self.warmup_updates,
            lr_milestones=tuple(self.lr_milestones), lr_gamma=self.lr_gamma, n_large_views=self.n_large_crops,
            temperature=self.temperature, sinkhorn_epsilon=self.sinkhorn_epsilon,
            sinkhorn_iterations=self.sinkhorn_iterations, marginal_weight=self.marginal_weight,
            logit_penalty=self.logit_penalty, logit_threshold=self.logit_threshold,
        )

    def _prepare_eval_set(self, eval_set):
        if eval_set is None:
            return None
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise ValueError("eval_set must be a pair (X_val, y_val).")
        X_val, y_val = eval_set
        prepared = self._prepare(X_val, reset=False)
        y_val = np.asarray(y_val)
        if y_val.ndim != 1 or y_val.shape[0] != prepared.values.shape[0]:
            raise ValueError(f"eval_set labels must be 1-D with one label per sample: got {y_val.shape} labels "
                             f"for {prepared.values.shape[0]} samples.")
        return prepared.values, y_val

    def _recalibrate(self, values: torch.Tensor) -> None:
        """Re-estimate BatchNorm statistics on un-augmented training batches.

        The batches always come from one random order of the training data drawn from the fit's seed, apart
        from the training's random stream: evaluating during a fit changes neither the training nor the
        model it returns, whose statistics are those the last evaluation used.
        """
        size = min(self.batch_size, values.shape[0])
        n_batches = min(self.bn_recalibration_batches, values.shape[0] // size)
        if n_batches == 0:
            return
        order = torch.randperm(values.shape[0], generator=torch.Generator().manual_seed(self.training_state_["seed"]))
        order = order.to(values.device)
        batches = (self._eval_transform(data_lib.gather(values, order[i * size:(i + 1) * size], self.device_))
                   for i in range(n_batches))
        recalibrate_batch_norm(self.model_, self.model_.cluster_logits, batches)

    def _evaluate(self, values: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
        proba = torch.softmax(self._logits(values), dim=1).numpy()
        return evaluate_clustering(labels, proba.argmax(axis=1))

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def _forward(self, values: torch.Tensor, network) -> torch.Tensor:
        """Run ``network`` on prepared ``values`` in evaluation mode, batch by batch, under the training's
        autocast (bf16 on CUDA); the outputs come back to the host in one float32 copy at the end."""
        was_training = self.model_.training
        self.model_.eval()
        cuda = self.device_.type == "cuda"
        outputs = []
        with torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=cuda and self.precision != "float32"):
            for part in data_lib.batches(values.shape[0], self.batch_size):
                batch = values[part].to(self.device_, non_blocking=True)
                outputs.append(network(self._eval_transform(batch)).float())
        self.model_.train(was_training)
        return torch.cat(outputs).cpu()

    def _logits(self, values: torch.Tensor) -> torch.Tensor:
        return self._forward(values, self.model_.cluster_logits)

    def _fitted_values(self, X) -> torch.Tensor:
        check_is_fitted(self, "model_")
        return self._prepare(X, reset=False).values

    def predict(self, X) -> np.ndarray:
        """Cluster of every sample: the argmax of the head's logits on the un-augmented input.

        Parameters
        ----------
        X : array-like or torch Dataset
            Samples shaped like the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster indices in ``[0, n_clusters)``.
        """
        return self._logits(self._fitted_values(X)).argmax(dim=1).numpy().astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Soft cluster assignment: the softmax of the head's logits.

        Parameters
        ----------
        X : array-like or torch Dataset
            Samples shaped like the training data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        return torch.softmax(self._logits(self._fitted_values(X)).double(), dim=1).numpy()

    def transform(self, X) -> np.ndarray:
        """Encoder features of the un-augmented input.

        Parameters
        ----------
        X : array-like or torch Dataset
            Samples shaped like the training data.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out), float32
            512-d for ResNet-18/34 at the default width, 2048-d for ResNet-50.
        """
        return self._forward(self._fitted_values(X), self.model_.encoder).numpy()

    def score(self, X, y=None) -> float:
        """Quality of the clustering of ``X``; higher is better.

        Parameters
        ----------
        X : array-like or torch Dataset
            Samples shaped like the training data.
        y : array-like of shape (n_samples,), default=None
            True classes. When given, the score is the clustering accuracy (best one-to-one map).

        Returns
        -------
        score : float
            With ``y``: accuracy in [0, 1]. Without: the mutual information ``I(X; Y)`` between samples and
            clusters in nats, ``H(mean_x p(y|x)) - mean_x H(p(y|x))``, the information-maximisation objective
            per sample; between 0 and ``log(n_clusters)``, high for confident, balanced clusters.
        """
        proba = self.predict_proba(X)
        if y is not None:
            return cluster_accuracy(y, proba.argmax(axis=1))
        marginal = proba.mean(axis=0)
        entropy_of_mean = -np.sum(marginal * np.log(np.clip(marginal, 1e-300, None)))
        mean_entropy = -np.mean(np.sum(proba * np.log(np.clip(proba, 1e-300, None)), axis=1))
        return float(entropy_of_mean - mean_entropy)

    # ------------------------------------------------------------------ persistence

    #: fitted attributes stored in checkpoints besides the model and the training state
    _FITTED = ("input_shape_", "n_features_in_", "pixel_range_", "pixel_mean_", "pixel_std_", "feature_mean_",
               "feature_scale_", "feature_names_in_", "n_iter_", "history_", "labels_")

    def save(self, path) -> None:
        """Write the fitted estimator to ``path`` atomically (a temporary file, then a rename).

        The file holds the parameters, the fitted attributes, the network weights and the training state
        (optimiser, schedule, random state) as plain data and tensors, so :meth:`load` reads it without
        unpickling any object, and ``warm_start`` continues training from it exactly.

        Parameters
        ----------
        path : str or path-like
            Target file; its folder is created if needed.
        """
        check_is_fitted(self, "model_")
        save_checkpoint(self._payload(), path)

    @classmethod
    def load(cls, path, device: str | None = None) -> "IMCSwAVClustering":
        """Read an estimator written by :meth:`save` (or a per-epoch checkpoint).

        Parameters
        ----------
        path : str or path-like
            Checkpoint file.
        device : str, default=None
            Where to put the model ("auto", "cpu", "cuda", "cuda:N"); None keeps the saved ``device``
            parameter, falling back to the CPU when it names a GPU this machine lacks.

        Returns
        -------
        estimator : IMCSwAVClustering
            Fitted; ``labels_`` is present when the file was written after ``fit`` completed.

        Raises
        ------
        CheckpointError
            When the file is not a readable imc-cluster checkpoint or does not match the architecture its
            parameters describe.
        """
        payload = load_checkpoint(path)
        try:
            defaults = cls().get_params()
            params = {k: tuple(v) if isinstance(defaults.get(k), tuple) and isinstance(v, list) else v
                      for k, v in payload["params"].items()}
            estimator = cls(**params)
            if device is not None:
                estimator.set_params(device=device)
            estimator._check_params()
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path} has invalid estimator parameters: {error}") from error
        estimator._restore_payload(payload, str(path))
        return estimator

    def _payload(self) -> dict:
        """Plain-data description of the fitted estimator (tensors on the CPU)."""
        fitted = {}
        for name in self._FITTED:
            if hasattr(self, name):
                fitted[name] = _plain(getattr(self, name))
        return {
            "library_version": _library_version(),
            "params": {k: _plain(v) for k, v in self.get_params().items() if k != "random_state"}
            | {"random_state": self.random_state if isinstance(self.random_state, Integral) else None},
            "fitted": fitted,
            "model": _to_cpu(self.model_.state_dict()),
            "training": _to_cpu(self.training_state_),
        }

    def _restore_payload(self, payload: dict, source: str) -> None:
        """Set fitted attributes, model and training state from :meth:`_payload`'s output."""
        try:
            for name, value in payload["fitted"].items():
                setattr(self, name, _from_plain(name, value))
            self._rebuild_model(payload["model"])
            self.training_state_ = payload["training"]
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source} does not match the architecture of its parameters: {error}") from None

    def _rebuild_model(self, weights: dict) -> None:
        """``model_`` from saved weights, on the device this machine gives the ``device`` parameter."""
        self.model_ = self._build_model(self.input_shape_, len(self.input_shape_) == 3, seed=0)
        self.model_.load_state_dict(weights)
        self.device_ = self._load_device()
        self.model_.to(self.device_)

    def _load_device(self) -> torch.device:
        try:
            return self._resolve_device()
        except ValueError:
            return torch.device("cpu")

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ may return __dict__ itself
        if "model_" in state:  # weights as CPU tensors: a model fitted on a GPU unpickles anywhere
            state["model_"] = _to_cpu(self.model_.state_dict())
            state["training_state_"] = _to_cpu(self.training_state_)
            state.pop("device_", None)
        return state

    def __setstate__(self, state):
        weights = state.get("model_")
        super().__setstate__(state)
        if isinstance(weights, dict):
            self._rebuild_model(weights)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.three_d_array = True
        return tags
