"""Section 3: the laptop workflow, a folder of photos to ``clusters.csv`` and ``clusters.png`` with a frozen
pretrained encoder, phase by phase, then again with another ``n_clusters`` (both caches filled).

Each run decodes the folder at the network's resize side (:func:`~imc_cluster.data.folders.load_image_folder`,
decoded-image cache), fits with the frozen encoder (feature cache) and writes the outputs with
:func:`~imc_cluster.prediction.folder.predict_folder`.
"""

from __future__ import annotations

import numpy as np

from benchmarks.pretrained.shared import Clock, Run, photo_folder
from imc_cluster.data.folders import load_image_folder
from imc_cluster.model.pretrained import network_preprocessing
from imc_cluster.prediction.folder import predict_folder

#: minutes the first run and the rerun should take at most
TARGETS = (10, 1)


def laptop_section(run: Run, n_images: int, settings: dict, n_clusters: tuple[int, int]) -> list[str]:
    """Section 3 on ``n_images`` photos with the estimator ``settings``: a run with ``n_clusters[0]``
    clusters, then one with ``n_clusters[1]``."""
    folder, cache_dir = run.work / "photos", run.work / "laptop_cache"
    photo_folder(run.data, folder, n_images)
    resize = network_preprocessing(run.backbone).resize
    lines = [
        "## 3. The laptop workflow: a folder of photos to CSV and picture",
        "",
        f"{n_images} CIFAR-10 training JPEG files (32x32, classes hidden) copied into a flat folder; "
        f"`load_image_folder(folder, {resize}, cache_dir=...)` (the network's resize side), "
        f"`IMCSwAVClustering(backbone='{run.backbone}', weights=PATH, cache_dir=...)` (frozen: "
        "`freeze_encoder='auto'` with weights), then `predict_folder(est, folder, output_dir)`. Settings: "
        + ", ".join(f"`{key}={value!r}`" for key, value in settings.items())
        + "; every other parameter at its default (`precision='auto'`).",
        "",
        "| run | n_clusters | decode s | fit s | of which epochs s | predict_folder s | total s | target | "
        "labels_ = predict_folder | load at start | CPU share (fit) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, k, minutes in zip(("first (empty caches)", "rerun (caches filled)"), n_clusters, TARGETS):
        with Clock() as decode:
            data = load_image_folder(folder, resize, cache_dir=cache_dir)
        estimator = run.estimator(cache_dir, n_clusters=k, **settings)
        with Clock() as fit:
            estimator.fit(data.images)
        with Clock() as predict:
            result = predict_folder(estimator, folder, run.work / f"clusters_{k}")
        epochs = sum(record["seconds"] for record in estimator.history_)
        total = decode.seconds + fit.seconds + predict.seconds
        agree = np.mean(estimator.labels_ == result.clusters) if result.paths == data.paths else float("nan")
        verdict = "met" if total <= 60 * minutes else "missed"
        lines.append(
            f"| {name} | {k} | {decode.seconds:.1f} | {fit.seconds:.1f} | {epochs:.1f} | "
            f"{predict.seconds:.1f} | {total:.1f} | {verdict} (<= {minutes} min) | {agree:.3f} | "
            f"{decode.load:.2f} | {fit.share:.2f} |"
        )
    written = sorted(path.name for path in (run.work / f"clusters_{n_clusters[1]}").iterdir())
    lines += [
        "",
        f"Written by `predict_folder`: {', '.join(f'`{name}`' for name in written)}. A fit's seconds beyond "
        "its epochs are the encoder's feature extraction (first run) or the cache read, the weights file "
        "and the network (rerun). `labels_ = predict_folder`: the share of photos that `predict_folder` "
        "puts in the cluster the fit gave them (`labels_`, from the cached features).",
        "",
    ]
    return lines
