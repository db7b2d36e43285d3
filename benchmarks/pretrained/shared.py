"""What the sections share: the run's choices, the estimator settings, the weights file, the image folders
and the clock that records how busy the machine was."""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from benchmarks.common import cpu_seconds
from imc_cluster import IMCSwAVClustering
from imc_cluster.model.pretrained import PRETRAINED, parse_backbone

#: the laptop settings of a frozen-encoder fit: few views (each costs an encoder pass per image, once), a
#: short run on the cached features, warm-up within the run
LAPTOP = {
    "n_large_crops": 2,
    "n_small_crops": 2,
    "max_epochs": 30,
    "batch_size": 256,
    "warmup_updates": 100,
    "random_state": 0,
}


@dataclass
class Run:
    """The command line's choices.

    Attributes
    ----------
    backbone : str
        ``"LIBRARY:NAME"``.
    weights : str
        ``"pretrained"`` or the path of a weights file.
    random_weights : bool
        Whether ``weights`` is a file of random weights that this run wrote (its figures say nothing about
        clustering quality).
    data : Path
        The extracted CIFAR-10 JPEG tree (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).
    work : Path
        A temporary folder for image folders, caches and outputs.
    """

    backbone: str
    weights: str
    random_weights: bool
    data: Path
    work: Path

    def estimator(self, cache_dir: Path, **params) -> IMCSwAVClustering:
        """An estimator of the run's network and weights, caching its features in ``cache_dir``."""
        return IMCSwAVClustering(backbone=self.backbone, weights=self.weights, cache_dir=cache_dir, **params)


def random_weights_file(backbone: str, path: Path, seed: int = 0) -> Path:
    """Save the freshly initialised weights of ``backbone`` (seed ``seed``) in its library's format (the
    whole network's state dict, as ``weights=PATH`` reads it) and return ``path``."""
    library, name = parse_backbone(backbone)
    torch.manual_seed(seed)
    if library == "torchvision":
        import torchvision

        network = torchvision.models.get_model(name, weights=None)
    elif library == "timm":
        import timm

        network = timm.create_model(name, pretrained=False)
    else:
        import open_clip

        network = open_clip.create_model(name)
    torch.save(network.state_dict(), path)
    return path


def weights_label(run: Run) -> str:
    """How the report names the weights."""
    if run.weights == PRETRAINED:
        return "the library's published weights (`--weights pretrained`)"
    if run.random_weights:
        return "random weights (seed 0) saved to a local file: figures of quality below say nothing"
    return f"the weights file `{run.weights}`"


def photo_folder(data: Path, folder: Path, n_images: int, seed: int = 0) -> None:
    """A flat folder of ``n_images`` CIFAR-10 training JPEG files, drawn at random, their classes hidden."""
    folder.mkdir(parents=True)
    sources = random.Random(seed).sample(sorted(data.glob("train/*/*.jpg")), n_images)
    for index, source in enumerate(sources):
        shutil.copyfile(source, folder / f"photo{index:05d}.jpg")


def cifar_classes_folder(data: Path, folder: Path, per_class: int, seed: int = 0) -> None:
    """An ImageFolder tree of ``per_class`` random CIFAR-10 test images of each class."""
    rng = random.Random(seed)
    for class_folder in sorted(data.glob("test/*")):
        (folder / class_folder.name).mkdir(parents=True)
        for source in rng.sample(sorted(class_folder.glob("*.jpg")), per_class):
            shutil.copyfile(source, folder / class_folder.name / source.name)


def digits_folder(folder: Path, per_class: int) -> None:
    """An ImageFolder tree of the first ``per_class`` images of each of scikit-learn's digits, as 8x8
    grey PNG files."""
    digits = load_digits()
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
        for index in np.flatnonzero(digits.target == digit)[:per_class]:
            pixels = np.round(digits.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / str(digit) / f"{index:04d}.png")


class Clock:
    """Wall seconds of a block, with the machine's 1-minute load average at its start and the share of the
    machine's busy CPU time in it that was this process's (near 1: nothing else ran; lower: shared)."""

    def __enter__(self) -> Clock:
        self.load = os.getloadavg()[0]
        self._busy, self._own = cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        busy, own = cpu_seconds()
        self.share = min(1.0, (own - self._own) / max(busy - self._busy, 1e-9))

    def cells(self) -> str:
        """The load and CPU share as two table cells."""
        return f"{self.load:.2f} | {self.share:.2f}"
