"""Full-configuration CIFAR-10 training epochs: seconds per epoch, images/s and model FLOP utilisation.

The configuration is the published one for CIFAR-10 (docs/method.md#published-command-line): the 50,000
training images, 2 crops of 28x28 and 4 of 18x18 per image, ResNet-18 (width 64), 1000 prototypes, batch
256, and every other setting at the estimator's default (on CUDA: bf16 autocast, channels-last, data
resident on the GPU). Each mode fits ``IMCSwAVClustering`` for ``--epochs`` epochs and reads the epoch
times from ``history_``. The first epoch pays one-off costs (cuDNN autotuning; compilation with
``compile=True``), so the figures are the median of the later epochs.

Model FLOP utilisation (MFU) is the networks' FLOPs per training image (forward and backward of the encoder,
projection, prototypes and cluster head on all six views, counted by ``torch.utils.flop_counter`` on one
batch) times images/s, over the GPU's dense bf16 peak. Augmentation, Sinkhorn and the optimiser are not
counted as model FLOPs.

    python -m benchmarks.speed.epochs --data data/cifar10 --output benchmarks/results/epochs_cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from imc_cluster import IMCSwAVClustering
from imc_cluster.data.datasets import load_dataset

#: dense (no sparsity) bf16 tensor-core peaks in FLOP/s, by a fragment of ``torch.cuda.get_device_name``;
#: the first fragment found in the name wins, so the more specific ones come first
BF16_DENSE_PEAKS = (
    ("H200 NVL", 835e12),
    ("H200", 989.4e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("A100", 312e12),
)
#: epochs of the published schedule, to project the full training time
PUBLISHED_EPOCHS = 500
TARGET_EPOCH_SECONDS = 10.0
#: CIFAR-10's training images, the size the target is set for
FULL_TRAIN = 50_000


def bf16_peak(device_name: str, override_tflops: float | None) -> float | None:
    """The dense bf16 peak of the GPU in FLOP/s (``override_tflops`` when given), or None when unknown."""
    if override_tflops is not None:
        return override_tflops * 1e12
    return next((peak for fragment, peak in BF16_DENSE_PEAKS if fragment in device_name), None)


def flops_per_image(estimator: IMCSwAVClustering, image_shape: tuple[int, int, int]) -> float:
    """FLOPs of the networks' forward and backward passes on the six views of one image, as in training."""
    model, device, batch = estimator.model_, estimator.device_, 64
    channels = image_shape[0]
    large, small = estimator.large_crop_size, estimator.small_crop_size
    views = [
        torch.randn(estimator.n_large_crops * batch, channels, *_pair(large), device=device),
        torch.randn(estimator.n_small_crops * batch, channels, *_pair(small), device=device),
    ]
    views = [view.contiguous(memory_format=torch.channels_last) for view in views]
    model.train()
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        _, scores, logits = model(views, batch)
        (scores.float().sum() + logits.float().sum()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def time_mode(
    train: np.ndarray, test: np.ndarray, epochs: int, batch_size: int, device: str, compile: bool
) -> dict:
    """Fit the full configuration for ``epochs`` epochs; epoch times, predict time and memory."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    estimator = IMCSwAVClustering(
        10,
        large_crop_size=28,
        small_crop_size=18,
        batch_size=batch_size,
        max_epochs=epochs,
        device=device,
        compile=compile,
        random_state=0,
    )
    start = time.perf_counter()
    estimator.fit(train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    estimator.predict(test)
    predict_seconds = time.perf_counter() - start
    seconds = [record["seconds"] for record in estimator.history_]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    images = round(estimator.history_[0]["images_per_second"] * seconds[0])  # the trainer's images per epoch
    return {
        "compile": compile,
        "epoch_seconds": seconds,
        "first_epoch_seconds": seconds[0],
        "steady_epoch_seconds": steady,
        "images_per_second": images / steady,
        "fit_seconds": fit_seconds,
        "outside_epochs_seconds": fit_seconds - sum(seconds),
        "predict_images": len(test),
        "predict_seconds": predict_seconds,
        "losses": [record["loss"] for record in estimator.history_],
        "cuda_max_allocated": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
        "flops_per_image": flops_per_image(estimator, tuple(estimator.input_shape_)),
    }


def target_verdict(results: dict) -> str:
    """Whether the fastest mode meets the epoch target; only a full run on a GPU is judged."""
    if results["n_train"] != FULL_TRAIN or results["device_name"] == "CPU":
        return "not judged: a --limit or CPU run"
    fastest = min(mode["steady_epoch_seconds"] for mode in results["modes"])
    return "met" if fastest < TARGET_EPOCH_SECONDS else "NOT met"


def report(results: dict) -> str:
    """Markdown table of the modes."""
    peak = results["bf16_peak_flops"]
    lines = [
        f"# Full-configuration CIFAR-10 epochs on {results['device_name']}",
        "",
        f"{results['n_train']:,} training images, 2x28 + 4x18 crops, ResNet-18 (width 64), 1000 prototypes, "
        f"batch {results['batch_size']}; {results['epochs']} epochs per mode, the first one reported apart. "
        f"torch {results['torch']}, {time.strftime('%Y-%m-%d')}. Command: `{results['command']}`",
        "",
        "| mode | first epoch (s) | epoch (s, median of later) | images/s | model TFLOP/s | MFU | "
        f"{PUBLISHED_EPOCHS} epochs (h) | predict {results['n_test']:,} (s) | CUDA max allocated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in results["modes"]:
        achieved = mode["flops_per_image"] * mode["images_per_second"]
        mfu = f"{achieved / peak:.1%}" if peak else "n/a (unknown peak)"
        allocated = f"{mode['cuda_max_allocated'] / 2**30:.1f} GiB" if mode["cuda_max_allocated"] else "n/a"
        lines.append(
            f"| {'torch.compile' if mode['compile'] else 'eager'} | {mode['first_epoch_seconds']:.1f} | "
            f"{mode['steady_epoch_seconds']:.2f} | {mode['images_per_second']:,.0f} | "
            f"{achieved / 1e12:.1f} | {mfu} | "
            f"{mode['steady_epoch_seconds'] * PUBLISHED_EPOCHS / 3600:.2f} | "
            f"{mode['predict_seconds']:.2f} | {allocated} |"
        )
    flops = results["modes"][0]["flops_per_image"]
    lines += [
        "",
        f"Model FLOPs per training image (forward + backward, six views): {flops / 1e9:.2f} GFLOP. "
        f"Peak used for MFU: {peak / 1e12:.0f} TFLOP/s dense bf16."
        if peak
        else f"Model FLOPs per training image: {flops / 1e9:.2f} GFLOP; the GPU's peak is unknown "
        "(pass --peak-tflops).",
        f"Target: an epoch of the {FULL_TRAIN:,} training images under {TARGET_EPOCH_SECONDS:.0f} s on a GPU "
        f"({target_verdict(results)}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.epochs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default="data/cifar10", help="CIFAR-10 ImageFolder tree (train/, test/)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per mode (at least 2)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--modes", nargs="+", choices=("eager", "compile"), default=["eager", "compile"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=int, help="train on the first LIMIT images only (smoke runs)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU, when not in the table")
    parser.add_argument("--output", help="also write OUTPUT.md and OUTPUT.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is reported apart")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a GPU; pass --device cpu for a (slow) CPU run")
    images = load_dataset("folder", args.data)
    train = images.train_images[: args.limit]
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    results = {
        "device_name": device_name,
        "torch": torch.__version__,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "n_train": len(train),
        "n_test": len(images.test_images),
        "bf16_peak_flops": bf16_peak(device_name, args.peak_tflops),
        "command": " ".join(
            ["python -m benchmarks.speed.epochs", *(argv if argv is not None else sys.argv[1:])]
        ),
        "modes": [],
    }
    for mode in args.modes:
        results["modes"].append(
            time_mode(
                train,
                images.test_images,
                args.epochs,
                args.batch_size,
                args.device,
                compile=mode == "compile",
            )
        )
        print(json.dumps(results["modes"][-1]), file=sys.stderr, flush=True)
    text = report(results)
    print(text)
    if args.output:
        stem = Path(args.output)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        stem.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
