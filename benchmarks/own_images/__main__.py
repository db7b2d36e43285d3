"""The own-photos workflow on CIFAR-10 images with their labels removed: ``train`` then ``predict``.

Makes a nested folder of N random CIFAR-10 training images of mixed sizes and formats (a quarter resized
to 48x40 PNG, a quarter to 64x64 WebP, the rest 32x32 JPEG) plus one file that is not an image, hides
their classes, trains with ``imc-cluster train --dataset folder --n_clusters 10 --image_size 32`` and
writes ``clusters.csv``, ``clusters.png`` and ``summary.json`` with ``imc-cluster predict``; then scores
the CSV against the hidden classes.

    python -m benchmarks.own_images --data data/cifar10 --output benchmarks/results/own_images_cifar10

``--data`` is the extracted CIFAR-10 JPEG tree (``train/<class>/*.jpg``). Arguments after ``--`` go to
``imc-cluster train``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imc_cluster.cli.main import main
from imc_cluster.metrics import evaluate_clustering

#: the training flags of the recorded run (a CPU budget of about 3 minutes on 2 cores)
TRAIN_FLAGS = [
    "--epochs",
    "12",
    "--backbone_width",
    "16",
    "--prototypes",
    "100",
    "--batch_size",
    "125",
    "--warmup",
    "100",
    "--dev",
    "cpu",
    "--quiet",
]


def make_folder(data: Path, folder: Path, n_images: int, seed: int = 0) -> dict[str, str]:
    """The unlabelled folder of mixed images; returns the hidden class of every file, by relative path."""
    rng = random.Random(seed)
    truth = {}
    for index, source in enumerate(rng.sample(sorted(data.glob("train/*/*")), n_images)):
        image = Image.open(source).convert("RGB")
        size, suffix = {1: ((48, 40), ".png"), 2: ((64, 64), ".webp")}.get(index % 4, (None, ".jpg"))
        image = image.resize(size) if size else image
        name = Path("holiday" if index % 3 == 0 else "misc") / str(index // 1000) / f"img{index:05d}{suffix}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
        truth[name.as_posix()] = source.parent.name
    (folder / "broken.jpg").write_bytes(b"not an image")
    return truth


def run(args: argparse.Namespace, extra: list[str]) -> None:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        folder, run_dir = Path(work) / "photos", Path(work) / "run"
        truth = make_folder(Path(args.data), folder, args.images)
        train = [
            "train",
            "--dataset",
            "folder",
            "--path",
            str(folder),
            "--n_clusters",
            "10",
            "--image_size",
            "32",
            "--output_dir",
            str(run_dir),
            *TRAIN_FLAGS,
            *extra,
        ]
        if main(train) or main(
            [
                "predict",
                "--cpt_load_path",
                str(run_dir / "model.cpt"),
                "--path",
                str(folder),
                "--output_dir",
                str(output),
                "--dev",
                "cpu",
                "--quiet",
            ]
        ):
            raise SystemExit("imc-cluster failed")
        shutil.copy(run_dir / "history.jsonl", output / "history.jsonl")
    with open(output / "clusters.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = sorted(set(truth.values()))
    scores = evaluate_clustering(
        np.array([classes.index(truth[row["path"]]) for row in rows]),
        np.array([int(row["cluster"]) for row in rows]),
    )
    report = {
        "images": args.images,
        "train_flags": [*TRAIN_FLAGS, *extra],
        "cluster_sizes": json.loads((output / "summary.json").read_text())["cluster_sizes"],
        "scores_against_hidden_classes": scores,
    }
    (output / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def parse() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.own_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="data/cifar10", help="extracted CIFAR-10 JPEG tree")
    parser.add_argument("--images", type=int, default=3000, help="images in the folder")
    parser.add_argument("--output", default="benchmarks/results/own_images_cifar10", help="output folder")
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    return parser.parse_args(argv), extra


if __name__ == "__main__":
    run(*parse())
