"""A frozen encoder's features of single images, kept on disk and found by the images' content.

A frozen encoder's feature of an image depends on nothing but the image's pixels, the network, its weights,
the preprocessing and the arithmetic's dtype. :class:`FeatureStore` keeps such features in one folder per
such encoder, found by a digest of each image's encoded pixels: a fit puts the features of its images' centre
crops there, and ``predict``, ``transform`` and ``predict_folder`` on the same photos read them back instead
of running the network again, whatever the order, batching or file names of the photos.

The folder holds shards, each a pair of ``.npy`` files written atomically: ``<name>.features.npy``
(``(n, d + 1)`` float16, each vector with its power-of-two scale: :mod:`~imc_cluster.core.halves`) and then
``<name>.digests.npy`` (``(n,)``, 16 bytes each), so that a shard is seen only once both are whole. Several
processes may add shards to one folder at once. Features are so rounded wherever they come from (the
store's or just computed), so that an image gets exactly the same feature every time.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imc_cluster.core.halves import from_scaled_half, to_scaled_half

__all__ = ["FeatureStore", "feature_store", "image_digests", "warn_unkept"]

_DIGEST = np.dtype("V16")
_DIGESTS_SUFFIX = ".digests.npy"
_FEATURES_SUFFIX = ".features.npy"


def warn_unkept(folder: str | os.PathLike, error: OSError) -> None:
    """Warn that features could not be kept in ``folder`` (they are computed again next time)."""
    warnings.warn(
        f"The encoder's features could not be kept in {folder} ({error}); they will be computed again "
        "next time. Set cache_dir (or IMC_CLUSTER_CACHE_DIR) to a writable folder.",
        RuntimeWarning,
        stacklevel=3,
    )


def image_digests(values: torch.Tensor) -> np.ndarray:
    """The content digest (16 bytes of SHA-256) of every sample of ``values``: its shape and bytes."""
    array = np.ascontiguousarray(values.cpu().numpy())
    shape = repr((array.dtype.str, array.shape[1:])).encode()
    out = np.empty(array.shape[0], _DIGEST)
    for row in range(array.shape[0]):
        out[row] = hashlib.sha256(shape + array[row].data).digest()[:16]
    return out


class FeatureStore:
    """The features, by image digest, of one frozen encoder, kept in ``folder``.

    Parameters
    ----------
    folder : path-like
        The store's folder (created on the first write); one per encoder, preprocessing and dtype.
    n_features : int
        The features' dimension ``d``.
    """

    _lock = threading.Lock()

    def __init__(self, folder: str | os.PathLike, n_features: int) -> None:
        self.folder = Path(folder)
        self.n_features = int(n_features)
        self._shards: list[str] = []
        self._digests = np.empty(0, _DIGEST)  # sorted
        self._where = np.empty((0, 2), np.int64)  # (shard, row) of each sorted digest

    def features(self, values: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The float32 features ``(N, d)`` of encoded ``values``: those in the store, and ``compute`` of
        the others (added to the store), all rounded as the store keeps them."""
        digests = image_digests(values)
        found, out = self.lookup(digests)
        missing = np.flatnonzero(~found)
        if missing.size:
            index = torch.from_numpy(missing).to(values.device)
            computed = to_scaled_half(compute(values.index_select(0, index))).cpu().numpy()
            out[missing] = computed
            try:
                self._write(digests[missing], computed)  # just looked up: none is held
            except OSError as error:  # a full disk, a read-only cache: the features are right, not kept
                warn_unkept(self.folder, error)
        return from_scaled_half(torch.from_numpy(out))

    def lookup(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which ``digests`` the store holds, and their stored features ``(N, d + 1)`` (scaled float16,
        zeros where not)."""
        shards, known, where = self._refresh()
        out = np.zeros((digests.shape[0], self.n_features + 1), np.float16)
        if not known.size:
            return np.zeros(digests.shape[0], bool), out
        position = np.minimum(np.searchsorted(known, digests), known.size - 1)
        found = known[position] == digests
        shard, row = where[position[found]].T
        rows = np.flatnonzero(found)
        for index in np.unique(shard):
            take = shard == index
            try:
                features = np.load(self.folder / f"{shards[index]}{_FEATURES_SUFFIX}", mmap_mode="r")
                out[rows[take]] = features[row[take]]
            except (OSError, ValueError, IndexError):  # removed or damaged since: computed again
                found[rows[take]] = False
        return found, out

    def add(self, digests: np.ndarray, features: np.ndarray) -> None:
        """Keep ``features`` (``(n, d + 1)``, as :func:`~imc_cluster.core.halves.to_scaled_half` gives them)
        of the images of ``digests``, those the store does not hold yet."""
        found, _ = self.lookup(digests)
        self._write(digests[~found], np.asarray(features, np.float16)[~found])

    def _write(self, digests: np.ndarray, features: np.ndarray) -> None:
        """Write one shard of ``features`` ``(n, d + 1)`` float16, each image's once."""
        digests, first = np.unique(digests, return_index=True)
        if not digests.size:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        features = features[first]
        for suffix, array in ((_FEATURES_SUFFIX, features), (_DIGESTS_SUFFIX, digests)):
            partial = self.folder / f".{name}{suffix}.partial"
            with open(partial, "wb") as handle:
                np.save(handle, array)
            os.replace(partial, self.folder / f"{name}{suffix}")

    def _refresh(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Read the digests of shards added since the last look (by any process); the shard names, sorted
        digests and their ``(shard, row)``."""
        try:
            entries = [e.name for e in os.scandir(self.folder) if e.name.endswith(_DIGESTS_SUFFIX)]
        except OSError:  # no folder yet, or not a folder: an empty store
            entries = []
        with self._lock:
            listed = sorted(name[: -len(_DIGESTS_SUFFIX)] for name in entries)
            if not set(self._shards) <= set(listed):  # shards removed (the cache cleared): read afresh
                self._shards, self._digests, self._where = (
                    [],
                    np.empty(0, _DIGEST),
                    np.empty((0, 2), np.int64),
                )
            known = set(self._shards)
            new = [name for name in listed if name not in known]
            if new:
                self._read(new)
            return list(self._shards), self._digests, self._where

    def _read(self, new: list[str]) -> None:
        """Add the shards ``new`` to the index."""
        digests, where = [self._digests], [self._where]
        for name in new:
            try:
                shard_digests = np.load(self.folder / f"{name}{_DIGESTS_SUFFIX}")
            except (OSError, ValueError):  # removed or damaged since it was listed: not a shard
                continue
            if shard_digests.dtype != _DIGEST or shard_digests.ndim != 1:
                continue
            rows = np.arange(shard_digests.size)
            where.append(np.stack([np.full_like(rows, len(self._shards)), rows], axis=1))
            digests.append(shard_digests)
            self._shards.append(name)
        digests = np.concatenate(digests)
        order = np.argsort(digests, kind="stable")
        self._digests, self._where = digests[order], np.concatenate(where)[order]


_STORES: dict[tuple[Path, int], FeatureStore] = {}


def feature_store(folder: str | os.PathLike, n_features: int) -> FeatureStore:
    """The store of ``folder`` (one object per folder in a process, so its index is read once)."""
    key = (Path(folder).resolve(), int(n_features))
    with FeatureStore._lock:
        return _STORES.setdefault(key, FeatureStore(*key))
