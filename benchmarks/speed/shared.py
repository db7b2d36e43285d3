"""What the sections of ``python -m benchmarks.speed`` share: the run's settings, the data, the benchmark
configuration's estimator and trainer, interleaved device-synchronised timing, and the report's formatting
helpers (the machine's description and load are in :mod:`benchmarks.common`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import fit_trainer
from imc_cluster import IMCSwAVClustering
from imc_cluster.data.arrays import as_tensor
from imc_cluster.data.datasets import load_dataset
from imc_cluster.training.trainer import Trainer

N_CLUSTERS = 10
#: shape (N, H, W, C) of the random train and test images used when no data set is found
FALLBACK_SHAPES = ((50_000, 32, 32, 3), (10_000, 32, 32, 3))


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on.

    Parameters
    ----------
    data : str
        ImageFolder tree with ``train/`` and ``test/`` (CIFAR-10); random images when it is missing.
    device : str
        "cpu" or "cuda".
    batch_size : int
        Images per training step, augmentation batch and predict chunk.
    width, tiny_width : int
        Backbone width of the benchmark configuration, and of the fits of the size sweep.
    n_prototypes, head_hidden_dim : int
        Prototypes and cluster-head width of the benchmark configuration.
    warmup, repeats : int
        Untimed and timed repetitions of sections a) and b).
    sweep_repeats : int
        Timed steps (after one warm-up) of every point of the prototype sweep.
    objective_repeats : int
        Timed runs (after three warm-up ones) of the objectives, and of the elementwise pass, of every point
        of the prototype sweep: they take milliseconds, so many runs cost little and steady the medians.
    augment_batches : int
        Batches augmented in one timed repetition of our augmenter.
    torchvision_images : int
        Images in one timed epoch of the per-image DataLoader.
    predict_fit_batches : int
        Steps of the short fit before the predict benchmark.
    predict_images, predict_repeats : int
        Test images per predict call, and timed calls.
    memory_steps : int
        Training steps of the memory subprocess before it stops ``fit``.
    sizes, prototypes : tuple of int
        Numbers of images of the fit/predict sweep, and prototype counts of the step sweep.
    """

    data: str
    device: str
    batch_size: int
    width: int
    tiny_width: int
    n_prototypes: int
    head_hidden_dim: int
    warmup: int
    repeats: int
    sweep_repeats: int
    objective_repeats: int
    augment_batches: int
    torchvision_images: int
    predict_fit_batches: int
    predict_images: int
    predict_repeats: int
    memory_steps: int
    sizes: tuple[int, ...]
    prototypes: tuple[int, ...]


@dataclass
class Data:
    """uint8 ``(N, H, W, C)`` train and test images, and where they came from."""

    train: np.ndarray
    test: np.ndarray
    source: str


# ---------------------------------------------------------------- data, estimator and trainer


def load_data(path: str) -> Data:
    """The CIFAR-10 ImageFolder tree at ``path`` or, when there is none, random images of its shape."""
    if Path(path).is_dir():
        images = load_dataset("folder", path)
        return Data(images.train_images, images.test_images, f"CIFAR-10 JPEG ImageFolder at {path}")
    rng = np.random.default_rng(0)
    train, test = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in FALLBACK_SHAPES)
    return Data(train, test, f"random uint8 images (no data set at {path})")


def channels_first(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` array as an ``(N, C, H, W)`` tensor over the same memory (a channels-last
    view), as the estimator's ``InputEncoder`` encodes images."""
    return as_tensor(images).permute(0, 3, 1, 2)


def training_batch(data: Data, settings: Settings) -> torch.Tensor:
    """One batch of uint8 training images on the settings' device."""
    return channels_first(data.train[: settings.batch_size]).to(settings.device)


def benchmark_estimator(settings: Settings, **params) -> IMCSwAVClustering:
    """An estimator of the benchmark configuration on the settings' device (``params`` override it)."""
    configuration = {
        "backbone_width": settings.width,
        "n_prototypes": settings.n_prototypes,
        "head_hidden_dim": settings.head_hidden_dim,
        "batch_size": settings.batch_size,
        "device": settings.device,
        "random_state": 0,
    }
    return IMCSwAVClustering(N_CLUSTERS, **{**configuration, **params})


def build_trainer(data: Data, settings: Settings, n_prototypes: int) -> Trainer:
    """The trainer that ``IMCSwAVClustering.fit`` builds for the benchmark configuration, with
    ``n_prototypes`` prototypes: its network, views, normalisation, precision and memory format."""
    return fit_trainer(benchmark_estimator(settings, n_prototypes=n_prototypes), data.train)[2]


# ---------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    tasks: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds of every timed run of every task; in each repetition the tasks run one after another.

    Parameters
    ----------
    tasks : dict of str to callable
        The tasks, by name.
    device : torch.device
        Device to synchronise with around every run.
    warmup, repeats : int
        Untimed repetitions, then timed ones.

    Returns
    -------
    dict of str to list of float
        ``repeats`` durations per task.
    """
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for repetition in range(warmup + repeats):
        for name, task in tasks.items():
            synchronize(device)
            start = time.perf_counter()
            task()
            synchronize(device)
            if repetition >= warmup:
                samples[name].append(time.perf_counter() - start)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median of every list of durations."""
    return {name: statistics.median(values) for name, values in samples.items()}


# ---------------------------------------------------------------- report helpers


def verdict(met: bool, device: str) -> str:
    """How a figure compares with its target; the targets are the CPU's, so a GPU run is not judged."""
    if device != "cpu":
        return f"not judged on {device}"
    return "met" if met else "NOT met"


def mb(n_bytes: float) -> str:
    """Bytes in (decimal) megabytes."""
    return f"{n_bytes / 1e6:,.0f} MB"
