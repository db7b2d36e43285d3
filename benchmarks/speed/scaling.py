"""Section d) of ``python -m benchmarks.speed``: how costs grow with the number of images and of prototypes.

One-epoch fit and predict of a tiny network on growing numbers of images (each in a fresh subprocess), and
step and objective times of the benchmark network for every number of prototypes, beside the cost per
element of an elementwise pass over scores of the same size (which shows the caches' part); and the
section's report.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from benchmarks.speed.memory import FitJob, fit_in_subprocess
from benchmarks.speed.shared import (
    Data,
    Settings,
    build_trainer,
    interleaved_times,
    mb,
    medians,
    training_batch,
)
from benchmarks.speed.step import step_tasks

#: a last marginal cost above this multiple of the first is reported as super-linear growth
SUPERLINEAR_RATIO = 1.25


def size_sweep(data: Data, settings: Settings) -> list[dict]:
    """One-epoch fit and predict of a tiny network on growing numbers of images, each in a subprocess."""
    sizes = [size for size in settings.sizes if size <= len(data.train)]
    return [
        fit_in_subprocess(
            FitJob(
                settings.data,
                size,
                settings.tiny_width,
                settings.batch_size,
                settings.device,
                None,
                settings.predict_repeats,
            )
        )
        for size in sizes
    ]


def prototype_sweep(data: Data, settings: Settings) -> list[dict]:
    """Step and objective times of the benchmark network for every number of prototypes, with the time of
    one elementwise pass (a division) over float32 scores of the views' shape: its cost per element shows
    how much of any super-linear growth of the objectives is the memory hierarchy rather than arithmetic."""
    device, batch = torch.device(settings.device), training_batch(data, settings)
    records = []
    for n_prototypes in settings.prototypes:
        trainer = build_trainer(data, settings, n_prototypes)
        tasks = step_tasks(trainer, batch)
        n_views = sum(group.n_crops for group in trainer.augment.groups)
        scores = torch.randn(n_views * settings.batch_size, n_prototypes, device=device)
        samples = interleaved_times({"step": tasks["step"]}, device, 1, settings.sweep_repeats)
        samples |= interleaved_times(
            {"objectives": tasks["objectives"], "elementwise": functools.partial(torch.div, scores, 0.1)},
            device,
            3,
            settings.objective_repeats,
        )
        records.append(
            {
                "n_prototypes": n_prototypes,
                "score_elements": scores.numel(),
                "median_seconds": medians(samples),
                "seconds": samples,
            }
        )
    return records


def marginal_costs(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """Slopes between successive points: constant for linear growth, rising for super-linear growth."""
    return [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:])]


# ---------------------------------------------------------------- the report


def growth(xs: Sequence[float], ys: Sequence[float]) -> str:
    """Whether the marginal cost of ``ys`` over ``xs`` rises (super-linear growth) or stays level."""
    slopes = marginal_costs(xs, ys)
    if len(slopes) < 2:
        return "one interval only"
    if min(slopes) <= 0:
        return "no growth above the timing noise"
    ratio = slopes[-1] / slopes[0]
    kind = "super-linear" if ratio > SUPERLINEAR_RATIO else "linear within the noise"
    return f"last marginal cost / first = {ratio:.2f}: {kind}"


def size_section(records: list[dict], settings: dict) -> list[str]:
    """Section d), first part: fit and predict against the number of images."""
    sizes = [r["n_images"] for r in records]
    marginal = marginal_costs(sizes, [r["fit_seconds"] for r in records])
    lines = [
        f"## d) Scaling with the number of images (one epoch, ResNet-18 of width {settings['tiny_width']}, "
        f"batch {settings['batch_size']}, other parameters the defaults)",
        "",
        "`fit` is data preparation, the epoch, BatchNorm re-estimation (at most 50 batches) and labelling "
        "the training images; `predict` labels the same images again (the median of "
        f"{settings['predict_repeats']}). Each point is one fresh subprocess.",
        "",
        "| images | steps | fit s | marginal fit s per 1k images | epoch s | epoch ms per image | predict s "
        "| predict images/s | fit peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, r in enumerate(records):
        steps = r["n_images"] // r["batch_size"]
        per_image = r["epoch_seconds"] / (steps * r["batch_size"])
        slope = f"{marginal[index - 1] * 1e3:.2f}" if index else "-"
        lines.append(
            f"| {r['n_images']:,} | {steps} | {r['fit_seconds']:.1f} | {slope} | "
            f"{r['epoch_seconds']:.1f} | {per_image * 1e3:.2f} | "
            f"{r['predict_seconds']:.2f} | {r['n_images'] / r['predict_seconds']:,.0f} | "
            f"{mb(r['peak_rss_fit'])} |"
        )
    fits = growth(sizes, [r["fit_seconds"] for r in records])
    predicts = growth(sizes, [r["predict_seconds"] for r in records])
    return [*lines, "", f"Growth with N: fit {fits}; predict {predicts}.", ""]


def prototype_section(records: list[dict], settings: dict, caches: str) -> list[str]:
    """Section d), second part: step and objective times against the number of prototypes, and the cost per
    element of an elementwise pass over scores of the same size."""
    batch = settings["batch_size"]
    counts = [r["n_prototypes"] for r in records]
    steps = [r["median_seconds"]["step"] for r in records]
    objectives = [r["median_seconds"]["objectives"] for r in records]
    per_element = [r["median_seconds"]["elementwise"] / r["score_elements"] for r in records]
    step_slopes, objective_slopes = marginal_costs(counts, steps), marginal_costs(counts, objectives)
    lines = [
        f"## d) Scaling with the number of prototypes K' (benchmark network, batch {batch})",
        "",
        f"Step: median of {settings['sweep_repeats']}; objectives (forward and backward) and the elementwise "
        f"pass (one division over float32 scores of all the views, {batch} x views x K'): medians of "
        f"{settings['objective_repeats']}. CPU caches: {caches}.",
        "",
        "| K' | step ms | images/s | objectives ms | marginal step ms per 1k K' "
        "| marginal objectives ms per 1k K' | scores MB | elementwise ns per element |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for index, (count, record) in enumerate(zip(counts, records)):
        slopes = (
            f"{step_slopes[index - 1] * 1e6:.1f} | {objective_slopes[index - 1] * 1e6:.1f}"
            if index
            else "- | -"
        )
        lines.append(
            f"| {count:,} | {steps[index] * 1e3:,.0f} | {batch / steps[index]:,.1f} | "
            f"{objectives[index] * 1e3:,.1f} | {slopes} | {record['score_elements'] * 4e-6:,.1f} | "
            f"{per_element[index] * 1e9:.2f} |"
        )
    cheapest = int(np.argmin(per_element))
    if cheapest == len(counts) - 1:
        traffic = (
            "An elementwise pass is cheapest per element at the largest K' "
            f"({per_element[-1] * 1e9:.2f} ns): the scores' size costs no memory traffic here."
        )
    else:
        traffic = (
            f"An elementwise pass costs {per_element[-1] / per_element[cheapest]:.2f} times as much "
            f"per element at K' = {counts[-1]:,} as at its cheapest (K' = {counts[cheapest]:,}; "
            "small passes pay a fixed cost per call): the arithmetic per element is the same, so a "
            "ratio above 1 is memory traffic (the scores outgrow the caches); the objectives are "
            "mostly such passes (softmaxes, Sinkhorn's scalings, the losses' products)."
        )
    return [
        *lines,
        "",
        f"Growth with K': step {growth(counts, steps)}; objectives {growth(counts, objectives)}. {traffic}",
        "",
    ]


SCALING_NOTES = [
    "What to expect. Every cost of a step is linear in K': the prototype layer (6B x 128 x K'), the "
    "softmaxes over K' of the 6 views, Sinkhorn-Knopp (O(B K') per iteration, 3 iterations for each of the 2 "
    "large views, batched), Adam on the 128 x K' prototypes, and the mutual-information loss, whose joint "
    "matrices (K x K' for each of the 36 (head view, prototype view) pairs) come from one (6K x B) by "
    "(B x 6K') product. Nothing is "
    "quadratic in K' or in the batch; the 36 pairs are quadratic only in the number of views. A fit is one "
    "pass over the data plus a fixed cost (model construction, pixel statistics, BatchNorm re-estimation, "
    "which grows with N until there are 50 batches), so fit and predict time should grow linearly with N.",
    "",
]
