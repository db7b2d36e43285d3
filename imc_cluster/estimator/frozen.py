"""A frozen encoder's features: those of every training view computed once and cached on disk.

With a frozen encoder only the projection, the prototypes and the cluster head train, on the encoder's
features. Those of a fixed set of views per sample (the un-augmented centre crop, ``n_large_crops`` large
and ``n_small_crops`` small random views) are computed once, in batches, and kept in the user's cache
folder as a float16 array ``(N, 1 + V, d)`` that training reads memory-mapped: epochs take seconds, and a
second fit on the same images (another ``n_clusters``, say) reuses it. The file is named by a digest of
everything that makes its content: the encoded images, the network and its weights, the views and their
seed, and the precision.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import numpy as np
import torch
from tqdm.auto import tqdm

from imc_cluster.core.cache import cache_folder
from imc_cluster.data import arrays as data_lib
from imc_cluster.estimator import components
from imc_cluster.estimator.fitted import Fitted
from imc_cluster.inference.features import view_features
from imc_cluster.inference.outputs import run

__all__ = ["EXTRACTION_BATCH", "cached_view_features", "evaluation_features"]

#: images per encoder pass while the features are computed
EXTRACTION_BATCH = 64
#: part of every cache key; bump it when what the features hold changes
_CACHE_VERSION = 1


def _content_digest(values: torch.Tensor) -> str:
    digest = hashlib.sha256()
    array = np.ascontiguousarray(values.cpu().numpy())
    for row in range(0, array.shape[0], 1024):
        digest.update(array[row : row + 1024].data)
    return digest.hexdigest()


def _key(params: dict, fitted: Fitted, values: torch.Tensor, dtype: torch.dtype | None) -> str:
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
        "version": _CACHE_VERSION,
        "network": fitted.architecture["backbone"],
        "weights": fitted.architecture["pretrained"]["weights"],
        "preprocessing": fitted.inputs.preprocessing.as_dict(),
        "views": {name: params[name] for name in views},
        "crops": components.crop_sizes(params, fitted.inputs),
        "seed": fitted.training_state["seed"],
        "dtype": str(dtype),
        "images": _content_digest(values),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def cached_view_features(params: dict, fitted: Fitted, values: torch.Tensor) -> torch.Tensor:
    """The features ``(N, 1 + V, d)`` (float16, memory-mapped) of every sample's views, from the cache or
    computed now (and cached)."""
    dtype = components.extraction_dtype(params["precision"], fitted.device)
    path = cache_folder("features", params["cache_dir"]) / f"{_key(params, fitted, values, dtype)}.npy"
    if not path.exists():
        _compute(params, fitted, values, dtype, path)
    return data_lib.as_tensor(np.load(path, mmap_mode="r"))


def _compute(params: dict, fitted: Fitted, values: torch.Tensor, dtype, path) -> None:
    n_views = 1 + params["n_large_crops"] + params["n_small_crops"]
    shape = (values.shape[0], n_views, fitted.model.encoder.out_features)
    partial = path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial.npy")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    generator = torch.Generator(fitted.device).manual_seed(fitted.training_state["seed"])
    fitted.model.to(fitted.device)
    fitted.model.encoder.to(memory_format=torch.channels_last)  # oneDNN's fast convolutions, as the inputs
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
    """The encoder features ``(N, d)`` of the un-augmented view of encoded ``values`` (float32, CPU)."""
    return run(
        fitted.model,
        fitted.model.encoder,
        values,
        fitted.inputs.network_input,
        device=fitted.device,
        batch_size=EXTRACTION_BATCH,
        bfloat16=components.extraction_dtype(params["precision"], fitted.device) is not None,
    )
