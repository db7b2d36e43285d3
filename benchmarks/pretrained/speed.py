"""Sections 1 and 2: the frozen encoder's feature extraction against the machine's peak, and what bf16
extraction changes beside float32.

1. The peak of ``torch.matmul`` on 2048x2048 matrices in float32 and bf16; the network's FLOPs per image
   (:class:`torch.utils.flop_counter.FlopCounterMode`, one forward pass of each view size); the extraction
   phase of a frozen fit (a fit with an empty feature cache less the same fit with the cache filled) in
   float32 and bf16, as images/s, GFLOPS and % of peak; and, to see where the rest goes, the network's own
   forward pass at its input size in either memory format, at several batch sizes and thread counts.
2. The cached features of the two extractions (the same images and views): their relative difference, and
   the agreement (ARI) of k-means on the un-augmented view's features of either, beside that of k-means
   with two seeds on the same float32 features.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.pretrained.shared import LAPTOP, Clock, Run
from imc_cluster.augmentation.crop_sizes import network_crop_sizes
from imc_cluster.core.cache import cache_folder
from imc_cluster.core.devices import resolve_device
from imc_cluster.core.halves import from_scaled_half
from imc_cluster.estimator.components import extraction_dtype
from imc_cluster.estimator.frozen import EXTRACTION_BATCH
from imc_cluster.estimator.params import ConfigurationWarning
from imc_cluster.model.pretrained import create_pretrained, network_preprocessing

#: matrix side of the peak measurement
PEAK_SIDE = 2048
#: the precisions compared: the fit's ``precision`` and its name in the report
PRECISIONS = {"float32": "fp32", "auto": "bf16"}
#: the dtypes of the peak and of the network's forward pass
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def peak_gflops(dtype: torch.dtype, threads: int, repeats: int = 10) -> float:
    """The best GFLOPS of ``torch.matmul`` of two ``PEAK_SIDE`` square matrices of ``dtype`` on
    ``threads`` threads."""
    a, b = (torch.randn(PEAK_SIDE, PEAK_SIDE).to(dtype) for _ in range(2))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(3):
            torch.matmul(a, b)
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * PEAK_SIDE**3 / best / 1e9


class Peaks:
    """The machine's peak matmul GFLOPS per (dtype name, threads): the best of every measurement, so that
    other work on a shared machine during one of them does not lower it."""

    def __init__(self, threads: tuple[int, ...]) -> None:
        self.threads = threads
        self.best: dict[tuple[str, int], float] = {}
        self.measurements = 0

    def measure(self) -> None:
        """Measure every peak once more."""
        for name, dtype in DTYPES.items():
            for n in self.threads:
                self.best[name, n] = max(self.best.get((name, n), 0.0), peak_gflops(dtype, n))
        self.measurements += 1

    def percent(self, gflops: float, name: str, threads: int) -> str:
        """``gflops`` as a percentage of the peak."""
        return f"{100 * gflops / self.best[name, threads]:.0f}%"


def forward_flops(network: torch.nn.Module, side: int) -> int:
    """FLOPs of one forward pass of one ``side x side`` image."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 3, side, side))
    return counter.get_total_flops()


def view_sides(run: Run) -> list[tuple[str, int, int]]:
    """The views of every image in the extraction: (name, side, views per image)."""
    preprocessing = network_preprocessing(run.backbone)
    large, small = network_crop_sizes(None, None, preprocessing.size, preprocessing.fixed_size)
    return [
        ("centre", preprocessing.size, 1),
        ("large", large[0], LAPTOP["n_large_crops"]),
        ("small", small[0], LAPTOP["n_small_crops"]),
    ]


def cached_features(cache_dir: Path) -> np.ndarray:
    """The one feature array ``(N, 1 + V, d)`` that the fits with ``cache_dir`` cached (as float32)."""
    (path,) = cache_folder("features", cache_dir).glob("*.npy")
    return from_scaled_half(torch.from_numpy(np.load(path))).numpy()


def timed_extraction(run: Run, images: np.ndarray, precision: str) -> tuple[float, Clock, np.ndarray]:
    """Seconds of a frozen fit's extraction phase (the fit with an empty cache less the same fit with it
    filled), the clock of the first fit, and the cached features."""
    cache_dir = run.work / f"speed_cache_{precision}"
    params = {**LAPTOP, "max_epochs": 1, "n_clusters": 10, "precision": precision}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigurationWarning)  # one epoch on few images: warm-up, prototypes
        with Clock() as cold:
            run.estimator(cache_dir, **params).fit(images)
        with Clock() as warm:
            run.estimator(cache_dir, **params).fit(images)
    return cold.seconds - warm.seconds, cold, cached_features(cache_dir)


def forward_rate(
    network: torch.nn.Module, side: int, batch: int, bf16: bool, channels_last: bool, threads: int
) -> tuple[float, Clock]:
    """Images/s of the network's forward pass on ``batch`` images of ``side`` pixels (the better of two
    passes after one of warm-up), and the clock of the better pass."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    network.to(memory_format=memory_format)
    x = torch.randn(batch, 3, side, side).contiguous(memory_format=memory_format)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    clocks = []
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(x)
            for _ in range(2):
                with Clock() as clock:
                    network(x)
                clocks.append(clock)
    finally:
        torch.set_num_threads(previous)
        network.to(memory_format=torch.contiguous_format)
    best = min(clocks, key=lambda clock: clock.seconds)
    return batch / best.seconds, best


def speed_sections(run: Run, images: np.ndarray, batches: tuple[int, ...]) -> list[str]:
    """Sections 1 and 2 on ``images`` (decoded at the network's resize side); ``batches`` are the batch
    sizes of the forward-pass investigation."""
    threads = torch.get_num_threads()
    peaks = Peaks(tuple(sorted({1, threads})))
    peaks.measure()
    network = create_pretrained(run.backbone, run.weights).network
    sides = view_sides(run)
    flops = {side: forward_flops(network, side) for _, side, _ in sides}
    per_image = sum(flops[side] * count for _, side, count in sides)
    extractions, features, rates = [], {}, {}
    for precision, name in PRECISIONS.items():
        seconds, clock, features[name] = timed_extraction(run, images, precision)
        rates[name] = len(images) / seconds
        extractions.append((precision, name, seconds, clock))
        peaks.measure()
    side = sides[0][1]
    configurations = [
        (name, channels_last, batch, threads)
        for name in DTYPES
        for channels_last in (False, True)
        for batch in batches
    ] + [(name, channels_last, batches[0], 1) for name in DTYPES for channels_last in (False, True)]
    forward = []
    for name, channels_last, batch, n in configurations:
        rate, clock = forward_rate(network, side, batch, name == "bf16", channels_last, n)
        forward.append((name, channels_last, batch, n, rate, clock))
    peaks.measure()
    lines = [
        "## 1. Feature extraction against the machine's peak",
        "",
        f"Peak: `torch.matmul` of two {PEAK_SIDE}x{PEAK_SIDE} matrices, the best of 10 products in each of "
        f"{peaks.measurements} measurements spread over the section: "
        + ", ".join(f"{name} {value:.1f} GFLOPS on {n} thread(s)" for (name, n), value in peaks.best.items())
        + f". `torch.get_num_threads()` = {threads}.",
        "",
        f"Network `{run.backbone}`: "
        + ", ".join(
            f"{count} {name} view(s) of {side} px ({flops[side] / 1e9:.2f} GFLOP each)"
            for name, side, count in sides
        )
        + f" per image: {per_image / 1e9:.2f} GFLOP per image for the whole extraction "
        f"(`FlopCounterMode`, one forward pass; a multiply-add counts 2). The fit extracts in batches of "
        f"`EXTRACTION_BATCH` = {EXTRACTION_BATCH} images; the autocast dtype this machine gets with "
        f"`precision='auto'` is {extraction_dtype('auto', resolve_device('cpu'))}.",
        "",
        "| extraction (frozen fit, `precision`) | images | seconds | images/s | GFLOPS | % of peak | "
        "load at start | CPU share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, name, seconds, clock in extractions:
        gflops = rates[name] * per_image / 1e9
        lines.append(
            f"| {name} (`{precision}`) | {len(images)} | {seconds:.1f} | {rates[name]:.2f} | {gflops:.1f} | "
            f"{peaks.percent(gflops, name, threads)} | {clock.cells()} |"
        )
    lines += [
        "",
        "Extraction seconds are those of a fit with an empty feature cache less those of the same fit "
        "again (cache filled); they hold the views' augmentation and the float16 cache writes besides "
        "the network. CPU share: of the machine's busy CPU time during the first fit, the part this "
        "process used (1.00: the machine was ours).",
        "",
        f"The network alone, {side} px inputs (forward pass, the better of two after one of warm-up):",
        "",
        "| dtype | memory format | batch | threads | images/s | GFLOPS | % of peak | load at start | "
        "CPU share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, channels_last, batch, n, rate, clock in forward:
        gflops = rate * flops[side] / 1e9
        lines.append(
            f"| {name} | {'channels_last' if channels_last else 'contiguous'} | {batch} | {n} | {rate:.2f} | "
            f"{gflops:.1f} | {peaks.percent(gflops, name, n)} | {clock.cells()} |"
        )
    return [*lines, "", *_precision_section(features, rates)]


def _precision_section(features: dict[str, np.ndarray], rates: dict[str, float]) -> list[str]:
    """Section 2: the bf16 features beside the float32 ones."""
    fp32, bf16 = (features[name].astype(np.float64) for name in ("fp32", "bf16"))
    relative = np.linalg.norm(bf16 - fp32, axis=-1) / np.maximum(np.linalg.norm(fp32, axis=-1), 1e-12)
    largest = np.abs(bf16 - fp32).max() / np.abs(fp32).max()
    kmeans = {
        (name, seed): KMeans(10, n_init=10, random_state=seed).fit_predict(values[:, 0])
        for name, values, seeds in (("fp32", fp32, (0, 1)), ("bf16", bf16, (0,)))
        for seed in seeds
    }
    return [
        "## 2. bf16 beside float32 extraction",
        "",
        f"The cached features of section 1's two extractions: {fp32.shape[0]} images, {fp32.shape[1]} views "
        f"each, {fp32.shape[2]} dimensions (both cached as float16 at each vector's power-of-two scale, "
        "which alone rounds by up to 2^-11 of the vector's largest value).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| relative L2 difference of a feature vector, median | {np.median(relative):.2e} |",
        f"| relative L2 difference of a feature vector, max | {relative.max():.2e} |",
        f"| largest absolute difference / largest float32 value | {largest:.2e} |",
        f"| ARI of k-means (K=10, seed 0) on bf16 vs float32 features (un-augmented view) | "
        f"{adjusted_rand_score(kmeans['fp32', 0], kmeans['bf16', 0]):.3f} |",
        f"| ARI of k-means seed 0 vs seed 1, both on float32 features (k-means' own spread) | "
        f"{adjusted_rand_score(kmeans['fp32', 0], kmeans['fp32', 1]):.3f} |",
        f"| extraction images/s, bf16 / float32 | {rates['bf16'] / rates['fp32']:.2f} |",
        "",
    ]
