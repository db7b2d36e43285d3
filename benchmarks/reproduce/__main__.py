"""Reproduce the published IMC-SwAV table: N seeds of ``imc-cluster train`` on one data set.

Every run goes through the command line's own code (:func:`imc_cluster.cli.main.train` and
:func:`imc_cluster.cli.main.test`), so what is measured is what users run. Prints and writes a markdown table
of mean (std) ACC/NMI/ARI (and top-5 ACC on C100) over the seeds, with epochs, wall time, training
throughput and device, beside the published figures; the raw per-seed records go to a JSON file.

    python -m benchmarks.reproduce --dataset c10 --path data/cifar10 --seeds 0 1 2 \\
        --output benchmarks/results/c10 -- --epochs 500

Arguments after ``--`` are passed to ``imc-cluster train`` unchanged (any of its flags).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imc_cluster.cli.main import parse_args, test, train
from imc_cluster.data.datasets import ImageSet, load_dataset

#: docs/method.md#published-results: mean (std) of 15 runs, ResNet-18, 500 epochs, test split
PUBLISHED = {
    "C10": {"acc": (89.1, 0.5), "nmi": (81.1, 0.7), "ari": (79.0, 1.0)},
    "C20": {"acc": (49.0, 1.8), "nmi": (50.3, 1.2), "ari": (33.7, 1.3)},
    "STL10": {"acc": (83.1, 1.0), "nmi": (72.9, 0.9), "ari": (68.5, 1.4)},
    "TINY": {"acc": (27.9, 0.3), "nmi": (48.5, 2.0), "ari": (14.3, 2.1)},
    "C100": {"acc": (45.1, None), "top5_acc": (67.5, None), "nmi": (60.8, None), "ari": (30.7, None)},
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def run_seed(data: ImageSet, dataset: str, path: str, seed: int, extra: list[str], workdir: Path) -> dict:
    """One ``train`` then ``test`` run on the loaded ``data``; returns its metrics and costs."""
    output = workdir / f"seed{seed}"
    argv = [
        "train",
        "--dataset",
        dataset,
        "--path",
        path,
        "--seed",
        str(seed),
        "--output_dir",
        str(output),
        "--cpt_name",
        "model.cpt",
        "--quiet",
        *extra,
    ]
    args = parse_args(argv)
    start = time.perf_counter()
    estimator = train(args, data)
    wall = time.perf_counter() - start
    test_argv = ["test", "--dataset", dataset, "--path", path, "--cpt_load_path", str(output / "model.cpt")]
    if args.limit_test:
        test_argv += ["--limit_test", str(args.limit_test)]
    if args.dev:
        test_argv += ["--dev", args.dev]
    metrics = test(parse_args(test_argv), data)
    history = estimator.history_
    return {
        "seed": seed,
        **metrics,
        "epochs": estimator.n_iter_,
        "wall_seconds": wall,
        "images_per_second": float(np.mean([r["images_per_second"] for r in history])),
        "device": device_name(estimator.device_),
        "train_args": extra,
    }


def table(name: str, runs: list[dict], note: str) -> str:
    """Markdown table: ours mean (std) beside the published figures, in percent."""
    keys = [k for k in ("acc", "top5_acc", "nmi", "ari") if k in runs[0]]
    published = PUBLISHED.get(name, {})
    lines = [
        note,
        "",
        "| | " + " | ".join(k.upper() for k in keys) + " | epochs | wall time (s) | img/s | device |",
        "|---" * (len(keys) + 5) + "|",
    ]
    ours = []
    for key in keys:
        values = 100 * np.array([r[key] for r in runs])
        ours.append(f"{values.mean():.1f} ({values.std():.1f})")
    costs = [
        f"{np.mean([r['epochs'] for r in runs]):.0f}",
        f"{np.mean([r['wall_seconds'] for r in runs]):.0f}",
        f"{np.mean([r['images_per_second'] for r in runs]):.0f}",
        runs[0]["device"],
    ]
    lines.append(f"| imc-cluster, {len(runs)} seed(s) | " + " | ".join(ours + costs) + " |")
    if published:
        cells = [
            f"{published[k][0]:.1f}" + (f" ({published[k][1]:.1f})" if published[k][1] is not None else "")
            if k in published
            else ""
            for k in keys
        ]
        lines.append("| published (15 runs) | " + " | ".join([*cells, "500", "", "", ""]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="data set name, as for imc-cluster train")
    parser.add_argument("--path", default="./dataset", help="data folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", help="write OUTPUT.json (per-seed records) and OUTPUT.md (the table)")
    parser.add_argument("--note", default="", help="a line above the table saying what the run was")
    parser.add_argument(
        "--published",
        help="which published row to compare with (default: the data set's; "
        "e.g. C10 for the CIFAR-10 copy read as --dataset folder)",
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then flags for imc-cluster train")
    args = parser.parse_args()
    extra = [a for a in args.train_args if a != "--"]
    data = load_dataset(args.dataset, args.path)  # once, for every seed's train and test
    with tempfile.TemporaryDirectory() as workdir:
        runs = [run_seed(data, args.dataset, args.path, seed, extra, Path(workdir)) for seed in args.seeds]
    name = (args.published or args.dataset).upper()
    note = (
        args.note
        or f"{name}, imc-cluster train {' '.join(extra)}; seeds {args.seeds}; torch {torch.__version__}."
    )
    text = table(name, runs, note)
    print("\n" + text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.output}.json").write_text(json.dumps(runs, indent=1))
        Path(f"{args.output}.md").write_text(text)


if __name__ == "__main__":
    main()
