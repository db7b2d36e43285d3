"""The estimator's inputs: one object learns what the training ``X`` is and encodes every later ``X``.

:class:`InputEncoder` is fitted on the training data. It learns the kind of input (images or plain feature
vectors), the shape of one sample, and for images the pixel range of the training form and the per-channel
mean and std of the normalisation, for vectors the per-feature mean and scale of the standardisation. It
then turns the training ``X`` and any later one (predict, transform, score, ``eval_set``) into
:class:`~imc_cluster.data.arrays.PreparedData`, after checking it against what it learned. Its state is plain
data (:meth:`InputEncoder.state_dict`), which checkpoints and pickles keep.

Pixel values are read by their own form wherever the form tells their range
(:func:`~imc_cluster.data.arrays.pixel_range`): uint8 over [0, 255], uint16 over [0, 65535], bool as 0 and 1,
and floats in [0, 1] (``ToTensor``) as such, so the same pixels give the same result whether they come as
uint8 arrays, float arrays or a ``ToTensor()`` Dataset. Feature vectors are standardised in float64 before
they become float32, so that a large common offset costs no precision.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from imc_cluster.augmentation.multicrop import check_normalization, normalize
from imc_cluster.core.numbers import is_integer
from imc_cluster.data import arrays as data_lib
from imc_cluster.data.pil_images import images_from_dataset
from imc_cluster.data.resizing import Preprocessing, center_crop, to_resize_square

__all__ = ["InputEncoder", "check_image_shape"]

#: the largest magnitude a float32 holds
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_image_shape(value) -> None:
    """Validate the structure of an ``image_shape`` parameter (its fit to the data is checked later)."""
    if value is None:
        return
    if (
        not isinstance(value, (tuple, list))
        or len(value) not in (2, 3)
        or not all(is_integer(s) and (s >= 1 or s == -1) for s in value)
        or list(value).count(-1) > 1
    ):
        raise ValueError(
            f"image_shape must be (height, width) or (height, width, channels) of positive ints "
            f"(at most one -1, inferred), got {value!r}."
        )


class InputEncoder:
    """What the training ``X`` was, and how to turn any ``X`` into network input.

    Parameters
    ----------
    image_shape : tuple of int or None
        The estimator's ``image_shape``: rows of a 2-D ``X`` are flattened images of this shape.
    backbone : str
        The estimator's ``backbone`` ("mlp" takes feature vectors only; the ResNets images only).
    normalization : (sequence, sequence) or None
        The estimator's ``normalization``: per-channel (mean, std) of images, or None for the statistics of
        the training images.
    preprocessing : Preprocessing or None
        A pretrained network's preprocessing: images of any size are brought to its input by its rule
        (:mod:`~imc_cluster.data.resizing`) and normalised by its statistics.

    Attributes
    ----------
    is_image : bool
        Whether the inputs are images.
    sample_shape : tuple of int
        ``(C, H, W)`` of an image or ``(F,)`` of a vector.
    pixel_range : (float, float) or None
        Value range of the training images that maps onto [0, 255].
    pixel_mean, pixel_std : list of float or None
        Per-channel normalisation of the images, in [0, 1] units.
    feature_mean, feature_scale : ndarray of float64 or None
        Standardisation of the feature vectors.
    """

    def __init__(
        self,
        image_shape=None,
        backbone: str = "auto",
        normalization=None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.image_shape = image_shape
        self.backbone = backbone
        self.normalization = normalization
        self.preprocessing = preprocessing
        self.is_image = False
        self.sample_shape: tuple[int, ...] = ()
        self.pixel_range: tuple[float, float] | None = None
        self.pixel_mean = self.pixel_std = None
        self.feature_mean = self.feature_scale = None

    # ------------------------------------------------------------------ fit and encode

    def fit_encode(self, X, estimator) -> data_lib.PreparedData:
        """Learn from the training ``X`` and encode it; ``estimator`` receives scikit-learn's
        ``n_features_in_`` (and ``feature_names_in_``) from :func:`validate_data`."""
        return self._encode(X, estimator, reset=True)

    def encode(self, X, estimator) -> data_lib.PreparedData:
        """Encode a later ``X``, which must be shaped like the training data."""
        return self._encode(X, estimator, reset=False)

    def _encode(self, X, estimator, reset: bool) -> data_lib.PreparedData:
        X = data_lib.as_array_like(X)
        if data_lib.is_dataset(X) or data_lib.ndim(X) > 2:
            images = images_from_dataset(X) if data_lib.is_dataset(X) else np.asarray(X)
            if images.dtype.kind not in "uifb":
                raise TypeError(f"Images must be numeric, got dtype {images.dtype}.")
            expected = None if reset or not self.is_image else self.sample_shape
            array = data_lib.images_from_array(data_lib.check_images(images), self.image_shape, expected)
            return self._images(array, reset, images.shape)
        array = validate_data(estimator, X, reset=reset, dtype="numeric", ensure_min_samples=1)
        if array.dtype.kind not in "uifb":
            array = array.astype(np.float64)
        if self.image_shape is not None:
            return self._images(data_lib.images_from_array(array, self.image_shape), reset)
        return self._vectors(array, reset)

    def _images(
        self, images: np.ndarray, reset: bool, given: tuple[int, ...] | None = None
    ) -> data_lib.PreparedData:
        if self.backbone == "mlp":
            raise ValueError(
                "backbone='mlp' takes plain feature vectors, but X holds images; use a ResNet "
                "backbone (or 'auto') for images, or flatten them into vectors yourself."
            )
        if images.shape[1] not in (1, 3):
            raise ValueError(f"Images must have 1 or 3 channels, got {images.shape[1]}.")
        if self.preprocessing is not None:
            return self._network_images(images, reset)
        shape = tuple(int(s) for s in images.shape[1:])
        if reset:
            self.is_image, self.sample_shape = True, shape
            self.pixel_range = data_lib.pixel_range(images)
        elif not self.is_image:
            raise ValueError(
                f"X holds images of shape (C, H, W) = {shape}, but the estimator was fitted on "
                f"feature vectors of {self.sample_shape[0]} values."
            )
        elif shape != self.sample_shape:
            channels, height, width = self.sample_shape
            one = given is not None and tuple(given) in (
                (height, width, channels),
                self.sample_shape,
                (height, width),
            )
            hint = " X is one image of the fitted shape: pass a batch of one, X[None]." if one else ""
            raise ValueError(
                f"X holds images of shape (C, H, W) = {shape}, but the estimator was fitted on "
                f"{self.sample_shape}.{hint}"
            )
        value_range = data_lib.pixel_range(images, fitted=self.pixel_range)
        return data_lib.PreparedData(
            data_lib.as_tensor(data_lib.to_uint8(images, value_range)), is_image=True
        )

    def _network_images(self, images: np.ndarray, reset: bool) -> data_lib.PreparedData:
        """Images of any size for a pretrained network, brought to its input by its own rule."""
        if reset:
            side = self.preprocessing.resize
            self.is_image, self.sample_shape = True, (3, side, side)
            self.pixel_range = data_lib.pixel_range(images)
        elif not self.is_image:
            raise ValueError(
                f"X holds images, but the estimator was fitted on feature vectors of {self.sample_shape[0]} "
                "values."
            )
        value_range = data_lib.pixel_range(images, fitted=self.pixel_range)
        uint8 = data_lib.as_tensor(data_lib.to_uint8(images, value_range))
        return data_lib.PreparedData(to_resize_square(uint8, self.preprocessing), is_image=True)

    def _vectors(self, array: np.ndarray, reset: bool) -> data_lib.PreparedData:
        if reset and self.backbone not in ("auto", "mlp"):
            raise ValueError(
                f"backbone={self.backbone!r} needs images: pass 3-D/4-D image arrays, a Dataset, "
                "or set image_shape for flattened images."
            )
        if not reset and self.is_image:
            raise ValueError(
                f"X holds feature vectors, but the estimator was fitted on images "
                f"{self.sample_shape}; pass images shaped like the training data."
            )
        if np.abs(array).max() > _FLOAT32_MAX:
            raise ValueError(
                f"X holds values beyond the float32 range (|x| up to {np.abs(array).max():.3g} > "
                f"{_FLOAT32_MAX:.3g}); rescale the features."
            )
        values = np.asarray(array, dtype=np.float64)
        if reset:
            self.is_image, self.sample_shape = False, (values.shape[1],)
            self.feature_mean = values.mean(axis=0)
            scale = values.std(axis=0)
            self.feature_scale = np.where(
                scale > 1e-12 * np.maximum(np.abs(self.feature_mean), 1.0), scale, 1.0
            )
        standardised = ((values - self.feature_mean) / self.feature_scale).astype(np.float32)
        return data_lib.PreparedData(torch.from_numpy(standardised), is_image=False)

    def fit_statistics(self, images: torch.Tensor) -> None:
        """Set the per-channel normalisation: the ``normalization`` parameter, or the statistics of the
        encoded training ``images``."""
        if self.preprocessing is not None:
            self.pixel_mean, self.pixel_std = list(self.preprocessing.mean), list(self.preprocessing.std)
            return
        if self.normalization is None:
            self.pixel_mean, self.pixel_std = data_lib.channel_statistics(images)
            return
        mean, std = check_normalization(self.normalization)
        if len(mean) != images.shape[1]:
            raise ValueError(
                f"normalization has {len(mean)} entries per statistic, but the images have "
                f"{images.shape[1]} channel(s)."
            )
        self.pixel_mean, self.pixel_std = mean, std

    def network_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The un-augmented network input of an encoded batch (on any device): normalised images, or the
        standardised vectors as they are. Images are brought to one memory layout (channels-last) first,
        so that the same pixels give bit-identical outputs whatever the layout of the caller's array."""
        if not self.is_image:
            return batch
        if self.preprocessing is not None:
            batch = center_crop(batch, self.preprocessing.size)
        return normalize(batch.contiguous(memory_format=torch.channels_last), self.pixel_mean, self.pixel_std)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """The learned state as plain data and tensors."""

        def tensor(a):
            return None if a is None else torch.from_numpy(np.asarray(a, dtype=np.float64).copy())

        return {
            "image_shape": None if self.image_shape is None else [int(v) for v in self.image_shape],
            "backbone": self.backbone,
            "is_image": self.is_image,
            "sample_shape": list(self.sample_shape),
            "pixel_range": None if self.pixel_range is None else list(self.pixel_range),
            "pixel_mean": self.pixel_mean,
            "pixel_std": self.pixel_std,
            "feature_mean": tensor(self.feature_mean),
            "feature_scale": tensor(self.feature_scale),
            "preprocessing": None if self.preprocessing is None else self.preprocessing.as_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (validated by :mod:`imc_cluster.checkpoints.files`)."""
        self.image_shape = None if state["image_shape"] is None else tuple(state["image_shape"])
        self.backbone = state["backbone"]
        self.is_image = bool(state["is_image"])
        self.sample_shape = tuple(int(s) for s in state["sample_shape"])
        self.pixel_range = (
            None if state["pixel_range"] is None else tuple(float(v) for v in state["pixel_range"])
        )
        self.pixel_mean = None if state["pixel_mean"] is None else [float(v) for v in state["pixel_mean"]]
        self.pixel_std = None if state["pixel_std"] is None else [float(v) for v in state["pixel_std"]]
        self.feature_mean = None if state["feature_mean"] is None else state["feature_mean"].numpy()
        self.feature_scale = None if state["feature_scale"] is None else state["feature_scale"].numpy()
        preprocessing = state.get("preprocessing")  # absent from the checkpoints of 0.3 and before
        self.preprocessing = None if preprocessing is None else Preprocessing.from_dict(preprocessing)
