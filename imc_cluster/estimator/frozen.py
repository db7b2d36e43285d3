"""A frozen encoder's features: those of every training view computed once and cached on disk.

With a frozen encoder only the projection, the prototypes and the cluster head train, on the encoder's
features. Those of a fixed set of views per sample (the un-augmented centre crop, ``n_large_crops`` large
and ``n_small_crops`` small random views) are computed once, in batches, and kept in the user's cache
folder as a float16 array ``(N, 1 + V, d + 1)`` (each vector with its power-of-two scale:
:mod:`~imc_cluster.core.halves`) that training reads memory-mapped: epochs take seconds, and a
second fit on the same images (another ``n_clusters``, say) reuses it. The file is named by a digest of
everything that makes its content: the encoded images, the network and its weights, the views and their
seed, and the precision.

The un-augmented view's features also go to the encoder's :class:`~imc_cluster.inference.store.FeatureStore`
(found by each image's content), where ``predict``, ``transform`` and ``predict_folder`` of a frozen model
read them, and keep those of the images they see: a fitted model predicts its own photos, or any it has
seen, without running the encoder again, in the same dtype as the fit, so ``predict`` gives ``labels_``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import numpy as np
import torch
from tqdm.auto import tqdm

from imc_cluster.augmentation.cached import EVALUATION_VIEW
from imc_cluster.core.cache import cache_folder, cache_root
from imc_cluster.core.halves import from_scaled_half, to_scaled_half
from imc_cluster.data import arrays as data_lib
from imc_cluster.estimator import components
from imc_cluster.estimator.fitted import Fitted
from imc_cluster.inference.features import view_features
from imc_cluster.inference.outputs import run
from imc_cluster.inference.store import FeatureStore, feature_store, image_digests, warn_unkept

__all__ = ["EXTRACTION_BATCH", "cached_view_features", "evaluation_features", "frozen_outputs"]

#: images per encoder pass while the features are computed
EXTRACTION_BATCH = 64
#: part of every cache key; bump it when what the features hold changes
_CACHE_VERSION = 2


def _digest(described: dict) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def _encoder_identity(fitted: Fitted, dtype: torch.dtype | None) -> dict:
    """What a frozen encoder's feature of one image depends on, besides the image: random weights (None)
    are those the fit's seed drew."""
    weights = fitted.architecture["pretrained"]["weights"]
    return {
        "version": _CACHE_VERSION,
        "network": fitted.architecture["backbone"],
        "weights": weights or f"random, seed {fitted.training_state['seed']}",
        "preprocessing": fitted.inputs.preprocessing.as_dict(),
        "dtype": str(dtype),
        "device": fitted.device.type,
    }


def _store(params: dict, fitted: Fitted, dtype: torch.dtype | None) -> FeatureStore:
    """The feature store of the fitted frozen encoder, computed in ``dtype`` (the fit's precision)."""
    folder = (
        cache_folder("features", params["cache_dir"]) / f"encoder-{_digest(_encoder_identity(fitted, dtype))}"
    )
    return feature_store(folder, fitted.model.encoder.out_features)


def _ready(fitted: Fitted) -> None:
    """The network on the fit's device, its encoder in channels-last (oneDNN's fast convolutions, as its
    inputs are), for the encoder's passes."""
    fitted.model.to(fitted.device)
    fitted.model.encoder.to(memory_format=torch.channels_last)


def _key(params: dict, fitted: Fitted, digests: np.ndarray, dtype: torch.dtype | None) -> str:
    """The cache file's name: a digest of everything its content depends on."""
    views = (
        "n_large_crops",
        "n_small_crops",
        "large_crop_scale",
        "small_crop_scale",
        "flip_prob",
        "color_jitter",
        "color_jitter_prob",
        "grayscale_prob",
    )
    described = {
        **_encoder_identity(fitted, dtype),
        "views": {name: params[name] for name in views},
        "crops": components.crop_sizes(params, fitted.inputs),
        "seed": fitted.training_state["seed"],
        "images": hashlib.sha256(digests.tobytes()).hexdigest(),
    }
    return _digest(described)


def cached_view_features(params: dict, fitted: Fitted, values: torch.Tensor) -> torch.Tensor:
    """The features ``(N, 1 + V, d + 1)`` (scaled float16, memory-mapped) of every sample's views, from the
    cache or computed now (and cached); the un-augmented view's are kept in the encoder's feature store."""
    dtype = components.extraction_dtype(params["precision"], fitted.device)
    digests = image_digests(values)
    path = cache_folder("features", params["cache_dir"]) / f"{_key(params, fitted, digests, dtype)}.npy"
    if not path.exists():
        _compute(params, fitted, values, dtype, path)
    features = np.load(path, mmap_mode="r")
    _store(params, fitted, dtype).add(digests, features[:, EVALUATION_VIEW])
    return data_lib.as_tensor(features)


def _compute(params: dict, fitted: Fitted, values: torch.Tensor, dtype, path) -> None:
    n_views = 1 + params["n_large_crops"] + params["n_small_crops"]
    shape = (values.shape[0], n_views, fitted.model.encoder.out_features + 1)  # scaled halves
    partial = path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    generator = torch.Generator(fitted.device).manual_seed(fitted.training_state["seed"])
    _ready(fitted)
    try:
        with tqdm(total=shape[0], disable=not params["verbose"], desc="features", unit="image") as bar:
            view_features(
                fitted.model.encoder,
                components.augmenter(params, fitted.inputs),
                fitted.inputs.network_input,
                values,
                out,
                batch_size=EXTRACTION_BATCH,
                generator=generator,
                device=fitted.device,
                dtype=dtype,
                on_batch=bar.update,
            )
        out.flush()
        del out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def evaluation_features(params: dict, fitted: Fitted, values: torch.Tensor) -> torch.Tensor:
    """The encoder features ``(N, d)`` of the un-augmented view of encoded ``values`` (float32, on the CPU,
    as the store keeps them): from the encoder's feature store, or computed in the fit's precision and kept
    there."""
    dtype = components.extraction_dtype(params["precision"], fitted.device)

    def compute(missing: torch.Tensor) -> torch.Tensor:
        _ready(fitted)
        return run(
            fitted.model,
            fitted.model.encoder,
            missing,
            fitted.inputs.network_input,
            device=fitted.device,
            batch_size=EXTRACTION_BATCH,
            bfloat16=dtype is not None,
        )

    try:
        store = _store(params, fitted, dtype)
    except OSError as error:  # no cache folder can be made: the same features, not kept
        warn_unkept(params["cache_dir"] or cache_root(), error)
        return from_scaled_half(to_scaled_half(compute(values)))
    return store.features(values, compute)


def frozen_outputs(network: str, params: dict, fitted: Fitted, values: torch.Tensor) -> torch.Tensor:
    """A frozen model's ``network`` ("encoder" or "cluster_logits") on encoded ``values``, on the encoder's
    stored features: what the fit computed for ``labels_``."""
    features = evaluation_features(params, fitted, values)
    if network == "encoder":
        return features
    fitted.on_features = True
    return fitted.logits(params, features)
