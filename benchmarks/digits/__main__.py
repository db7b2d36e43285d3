"""IMC-SwAV on scikit-learn's digits beside scikit-learn's own clusterers, in one run.

Fits every method on the 1,797 8x8 digit images for each seed, scores the labels against the true digits
(ACC under the best cluster-to-class map, NMI, ARI), and prints a markdown table of mean (std) over the
seeds with the seconds per fit.

    python -m benchmarks.digits                       # 3 seeds, the table on stdout
    python -m benchmarks.digits --output benchmarks/results/digits.md
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture

from imc_cluster import IMCSwAVClustering, evaluate_clustering
from imc_cluster.cli.main import estimator_params, parse_args
from imc_cluster.data.datasets import default_crop_sizes

#: the settings of ``imc-cluster train --dataset digits`` (its preset in imc_cluster.cli.main.PRESETS)
DIGITS_CONFIG = {
    **estimator_params(
        parse_args(["train", "--dataset", "digits", "--quiet"]),
        n_clusters=10,
        crop_sizes=default_crop_sizes(8, 8),
    ),
    "image_shape": (8, 8),
    "device": "cpu",
}


def baselines(seed: int) -> dict:
    """scikit-learn's clusterers, each with the digits' 10 clusters."""
    return {
        "KMeans": KMeans(n_clusters=10, n_init=10, random_state=seed),
        "SpectralClustering": SpectralClustering(
            n_clusters=10, affinity="nearest_neighbors", random_state=seed
        ),
        "AgglomerativeClustering (Ward)": AgglomerativeClustering(n_clusters=10, linkage="ward"),
        "GaussianMixture": GaussianMixture(n_components=10, covariance_type="full", random_state=seed),
    }


def run(seeds: list[int], epochs: int | None) -> dict[str, list[dict]]:
    """Fit every method once per seed; return per-method lists of metric records."""
    X, y = load_digits(return_X_y=True)
    results: dict[str, list[dict]] = {}
    for seed in seeds:
        config = {**DIGITS_CONFIG, "random_state": seed, **({"max_epochs": epochs} if epochs else {})}
        methods = {"IMCSwAVClustering": IMCSwAVClustering(**config), **baselines(seed)}
        for name, method in methods.items():
            start = time.perf_counter()
            labels = method.fit_predict(X)
            record = evaluate_clustering(y, labels)
            record["seconds"] = time.perf_counter() - start
            results.setdefault(name, []).append(record)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()), flush=True)
    return results


def table(results: dict[str, list[dict]], seeds: list[int], epochs: int) -> str:
    """Markdown table of mean (std) per method."""
    lines = [
        f"Digits (1,797 images, 10 classes), seeds {seeds}; IMC-SwAV {epochs} epochs on "
        f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}.",
        "",
        "| method | ACC | NMI | ARI | seconds per fit |",
        "|---|---|---|---|---|",
    ]
    for name, records in results.items():
        cells = []
        for key in ("acc", "nmi", "ari", "seconds"):
            values = np.array([r[key] for r in records])
            digits = 1 if key == "seconds" else 3
            cells.append(f"{values.mean():.{digits}f} ({values.std():.{digits}f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.digits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="random seeds (default 0 1 2)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override IMC-SwAV's epochs")
    parser.add_argument("--output", help="also write the table to this markdown file")
    args = parser.parse_args()
    results = run(args.seeds, args.epochs)
    text = table(results, args.seeds, args.epochs or DIGITS_CONFIG["max_epochs"])
    print("\n" + text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
