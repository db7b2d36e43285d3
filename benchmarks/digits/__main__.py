"""IMC-SwAV on scikit-learn's digits beside scikit-learn's own clusterers, in one run.

Fits every method on the 1,797 8x8 digit images for each seed, scores the labels against the true digits
(ACC under the best cluster-to-class map, NMI, ARI), and prints a markdown table of mean (std) over the
seeds with the seconds per fit.

    python -m benchmarks.digits                       # 3 seeds, the table on stdout
    python -m benchmarks.digits --output benchmarks/results/digits.md
    python -m benchmarks.digits --seeds 0 1 2 3 4 --n_heads 1 5 --output benchmarks/results/digits_heads.md

With several ``--n_heads`` values IMC-SwAV is fitted once per value and seed (the values of one seed one
after the other, so that they share the machine's load), and a second table compares, for every fit with
several heads, the head that predicts (the lowest head loss over the last epoch, no labels) with the mean
and the best of all its heads under the labels.
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


def head_scores(estimator: IMCSwAVClustering, X: np.ndarray, y: np.ndarray) -> dict:
    """ACC of the head that predicts, and the mean and best ACC over every head of a fitted estimator."""
    chosen = estimator.best_head_
    accuracies = []
    for head in range(estimator.n_heads):
        estimator.model_.select_head(head)
        accuracies.append(evaluate_clustering(y, estimator.predict(X))["acc"])
    estimator.model_.select_head(chosen)
    return {"chosen": accuracies[chosen], "mean": float(np.mean(accuracies)), "best": max(accuracies)}


def run(seeds: list[int], epochs: int | None, n_heads: list[int]) -> tuple[dict, dict]:
    """Fit every method once per seed (IMC-SwAV once per ``n_heads`` value); return per-method lists of
    metric records, and per ``n_heads`` value > 1 the :func:`head_scores` of every seed."""
    X, y = load_digits(return_X_y=True)
    results: dict[str, list[dict]] = {}
    heads: dict[int, list[dict]] = {}
    for seed in seeds:
        config = {**DIGITS_CONFIG, "random_state": seed, **({"max_epochs": epochs} if epochs else {})}
        ours = {
            f"IMCSwAVClustering{'' if n_heads == [1] else f' (n_heads={h})'}": IMCSwAVClustering(
                **{**config, "n_heads": h}
            )
            for h in n_heads
        }
        for name, method in {**ours, **baselines(seed)}.items():
            start = time.perf_counter()
            labels = method.fit_predict(X)
            record = evaluate_clustering(y, labels)
            record["seconds"] = time.perf_counter() - start
            if isinstance(method, IMCSwAVClustering):
                record["epoch_seconds"] = float(np.mean([r["seconds"] for r in method.history_]))
                if method.n_heads > 1:
                    scores = {"seed": seed, **head_scores(method, X, y)}
                    heads.setdefault(method.n_heads, []).append(scores)
            results.setdefault(name, []).append(record)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()), flush=True)
    return results, heads


def table(results: dict[str, list[dict]], seeds: list[int], epochs: int) -> str:
    """Markdown table of mean (std) per method."""
    lines = [
        f"Digits (1,797 images, 10 classes), seeds {seeds}; IMC-SwAV {epochs} epochs on "
        f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}.",
        "",
        "| method | ACC | NMI | ARI | seconds per fit | seconds per epoch |",
        "|---|---|---|---|---|---|",
    ]
    for name, records in results.items():
        cells = []
        for key in ("acc", "nmi", "ari", "seconds", "epoch_seconds"):
            if key not in records[0]:
                cells.append("")
                continue
            values = np.array([r[key] for r in records])
            digits = 3 if key in ("acc", "nmi", "ari") else 2
            cells.append(f"{values.mean():.{digits}f} ({values.std():.{digits}f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def heads_table(heads: dict[int, list[dict]]) -> str:
    """Markdown table of the chosen head's ACC beside the mean and best over the heads, per seed."""
    if not heads:
        return ""
    lines = [
        "",
        "The head that predicts (lowest head loss over the last epoch, no labels) beside every head, ACC per "
        "seed:",
        "",
        "| n_heads | seed | chosen head | mean of the heads | best head |",
        "|---|---|---|---|---|",
    ]
    for n_heads, records in heads.items():
        for record in records:
            accuracies = " | ".join(f"{record[key]:.3f}" for key in ("chosen", "mean", "best"))
            lines.append(f"| {n_heads} | {record['seed']} | {accuracies} |")
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
    parser.add_argument(
        "--n_heads",
        type=int,
        nargs="+",
        default=[1],
        help="IMC-SwAV's n_heads, one fit per value (default 1)",
    )
    parser.add_argument("--output", help="also write the table to this markdown file")
    args = parser.parse_args()
    results, heads = run(args.seeds, args.epochs, args.n_heads)
    text = table(results, args.seeds, args.epochs or DIGITS_CONFIG["max_epochs"]) + heads_table(heads)
    print("\n" + text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
