"""The cost of several cluster heads: the training step with ``n_heads`` heads beside the step with one.

Two configurations: the digits preset (a narrow ResNet-18 on 8x8 images, where the 1024-wide head is a
large part of the network) and the CIFAR-10 configuration (ResNet-18 of width 64 on 32x32 images, 2 + 4
crops, batch 64). For each, one trainer per ``n_heads`` is built as ``fit`` builds it, and their steps on the
same batch take turns in every repetition, so that the machine's load affects them alike; the report gives
the median step and its cost over one head.

    python -m benchmarks.heads                                     # about 3 minutes on a 2-core CPU
    python -m benchmarks.heads --output benchmarks/results/heads_cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import platform

import numpy as np
import torch
from sklearn.datasets import load_digits

from benchmarks.common import cpu_seconds, fit_trainer
from benchmarks.digits.__main__ import DIGITS_CONFIG
from benchmarks.speed.shared import interleaved_times, medians
from imc_cluster import IMCSwAVClustering

#: the configurations: estimator parameters and training images
CONFIGURATIONS = {
    "digits preset (ResNet-18 width 16, 8x8, batch 128)": (
        DIGITS_CONFIG,
        lambda: load_digits().data,  # what the preset trains on (as benchmarks.digits passes it)
    ),
    "CIFAR-10 (ResNet-18 width 64, 32x32, 2 + 4 crops, batch 64)": (
        {"batch_size": 64, "device": "cpu"},
        lambda: np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8),
    ),
}


def step_seconds(params: dict, images: np.ndarray, n_heads: list[int], warmup: int, repeats: int) -> dict:
    """Median seconds of one training step per ``n_heads``, the steps taking turns."""
    tasks = {}
    for heads in n_heads:
        estimator = IMCSwAVClustering(**{**params, "n_clusters": 10, "n_heads": heads, "random_state": 0})
        _, _, trainer, data = fit_trainer(estimator, images)
        batch = data[: estimator.batch_size]
        tasks[heads] = lambda trainer=trainer, batch=batch: trainer.step(batch)
    return medians(interleaved_times(tasks, torch.device("cpu"), warmup, repeats))


def report(n_heads: list[int], warmup: int, repeats: int) -> str:
    """The markdown report of every configuration."""
    busy, own = cpu_seconds()
    lines = [
        "# The training step with several cluster heads",
        "",
        f"Command: `python -m benchmarks.heads`; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Median training step over {repeats} repetitions (after {warmup} untimed), the steps of every "
        f"`n_heads` taking turns; {torch.get_num_threads()} CPU threads "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__}.",
        "",
        "| configuration | " + " | ".join(f"n_heads={h}" for h in n_heads) + " |",
        "|---|" + "---|" * len(n_heads),
    ]
    for name, (params, images) in CONFIGURATIONS.items():
        seconds = step_seconds(params, images(), n_heads, warmup, repeats)
        cells = [
            f"{seconds[h] * 1000:.1f} ms (+{100 * (seconds[h] / seconds[n_heads[0]] - 1):.0f}%)"
            for h in n_heads
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    busy_after, own_after = cpu_seconds()
    share = (own_after - own) / max(busy_after - busy, 1e-9)
    lines += ["", f"CPU share of this process during the run: {share:.2f} (1.00: the machine was ours).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.heads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n_heads", type=int, nargs="+", default=[1, 2, 5, 10], help="first is the baseline")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output", help="also write the report to this markdown file")
    args = parser.parse_args()
    text = report(args.n_heads, args.warmup, args.repeats)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
