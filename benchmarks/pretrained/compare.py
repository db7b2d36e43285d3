"""Section 4: k-means, the IMC-SwAV head on the frozen encoder, and the whole method fine-tuned, on labelled
folders, scored with ACC/NMI/ARI against the class folders.

Each folder (CIFAR-10 test images, scikit-learn's digits as 8x8 PNG files) is decoded at the network's resize
side. k-means (K = the classes, 10 seeds) clusters the encoder's features of the un-augmented images
(``transform`` of the frozen fit); the frozen fit's clusters are its ``labels_``; the fine-tuned fit
(``freeze_encoder=False``) trains the whole network from the same weights, briefly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from benchmarks.pretrained.shared import Clock, Run, cifar_classes_folder, digits_folder
from imc_cluster.data.folders import load_image_folder
from imc_cluster.estimator.params import ConfigurationWarning
from imc_cluster.metrics import evaluate_clustering
from imc_cluster.model.pretrained import network_preprocessing


def compare_section(run: Run, per_class: int, frozen: dict, finetuned: dict) -> list[str]:
    """Section 4 on ``per_class`` images of each class of either folder, with the estimator settings of the
    ``frozen`` and the ``finetuned`` fit."""
    folders: dict[str, Callable[[Path], None]] = {
        "CIFAR-10 test images": lambda folder: cifar_classes_folder(run.data, folder, per_class),
        "scikit-learn digits": lambda folder: digits_folder(folder, per_class),
    }
    resize = network_preprocessing(run.backbone).resize
    lines = [
        "## 4. k-means, the frozen-encoder head and fine-tuning on labelled folders",
        "",
        f"Per folder {per_class} images of each of its 10 classes, decoded at {resize} px. Frozen fit: "
        + ", ".join(f"`{key}={value!r}`" for key, value in frozen.items())
        + ". Fine-tuned fit (`freeze_encoder=False`): "
        + ", ".join(f"`{key}={value!r}`" for key, value in finetuned.items())
        + ". k-means: scikit-learn `KMeans(10, n_init=10, random_state=0)` on `transform` of the frozen fit "
        "(the encoder's features of the un-augmented images, float32).",
        "",
        "| folder | method | ACC | NMI | ARI | seconds | load at start | CPU share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    agreement = {}
    for index, (name, make) in enumerate(folders.items()):
        folder = run.work / f"labelled_{index}"
        make(folder)
        cache_dir = run.work / f"compare_cache_{index}"
        data = load_image_folder(folder, resize, cache_dir=cache_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfigurationWarning)  # few images: prototypes, warm-up
            with Clock() as frozen_clock:
                estimator = run.estimator(cache_dir, n_clusters=10, **frozen).fit(data.images)
            with Clock() as kmeans_clock:
                kmeans = KMeans(10, n_init=10, random_state=0).fit_predict(estimator.transform(data.images))
            agreement[name] = np.mean(estimator.predict(data.images) == estimator.labels_)
            with Clock() as finetuned_clock:
                tuned = run.estimator(cache_dir, n_clusters=10, freeze_encoder=False, **finetuned)
                tuned.fit(data.images)
        for method, labels, clock in (
            ("k-means on the features", kmeans, kmeans_clock),
            ("IMC-SwAV head, frozen encoder", estimator.labels_, frozen_clock),
            ("IMC-SwAV fine-tuned", tuned.labels_, finetuned_clock),
        ):
            scores = evaluate_clustering(data.labels, labels)
            lines.append(
                f"| {name} | {method} | {scores['acc']:.3f} | {scores['nmi']:.3f} | {scores['ari']:.3f} | "
                f"{clock.seconds:.1f} | {clock.cells()} |"
            )
    lines += [
        "",
        "k-means seconds hold the `transform` pass (float32 on the CPU) and k-means; the frozen fit's hold "
        "the feature extraction. The frozen fit's `predict` on its own training images (float32 on the "
        "CPU) gives the cluster of `labels_` (from the cached features, in the extraction's dtype) to "
        + " and ".join(f"{100 * share:.1f}% of the {name}" for name, share in agreement.items())
        + ".",
        "",
    ]
    return lines
