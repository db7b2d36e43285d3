"""Section b) of ``python -m benchmarks.speed``: training-step throughput and its breakdown.

The full ``Trainer.step`` beside its parts timed on their own (augmentation, the networks' forward and
backward, the objectives, the Adam update), the ATen operations each runs (counted with a
``TorchDispatchMode``); and the section's report.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.common import OperationCounter
from benchmarks.speed.shared import (
    Data,
    Settings,
    build_trainer,
    interleaved_times,
    medians,
    training_batch,
    verdict,
)
from imc_cluster.training.trainer import Trainer

#: CPU target: share of the step outside fwd+bwd
OUTSIDE_SHARE_TARGET = 0.10


def forward_backward(trainer: Trainer, views: list[torch.Tensor], batch_size: int) -> None:
    """The networks' forward and backward passes alone, with the sum of every output as the loss."""
    trainer.model.zero_grad(set_to_none=True)
    with trainer.autocast():
        _, scores, logits = trainer.model(views, batch_size)
    (scores.float().sum() + logits.float().sum()).backward()


def leaf_outputs(trainer: Trainer, views: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    """The networks' scores and logits ``(V, B, n)`` of ``views``, as float32 leaves that require a
    gradient."""
    with torch.no_grad(), trainer.autocast():
        _, scores, logits = trainer.model(views, batch_size)
    return [output.float().requires_grad_() for output in (scores, logits)]


def objective_backward(trainer: Trainer, scores: torch.Tensor, logits: torch.Tensor) -> None:
    """The objectives' forward and backward (Sinkhorn, SwAV, mutual information, penalty) alone."""
    scores.grad = logits.grad = None
    trainer.objectives(scores, logits)["loss"].backward()


def step_tasks(trainer: Trainer, batch: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The full step and its parts, as tasks for :func:`~benchmarks.speed.shared.interleaved_times`."""
    views = trainer.views(batch)
    scores, logits = leaf_outputs(trainer, views, batch.shape[0])
    return {
        "step": lambda: trainer.step(batch),
        "augment": lambda: trainer.views(batch),
        "forward_backward": lambda: forward_backward(trainer, views, batch.shape[0]),
        "objectives": lambda: objective_backward(trainer, scores, logits),
        "optimizer": trainer.optimizer.step,
    }


def operations(task: Callable[[], object]) -> int:
    """ATen operations of one run of ``task``."""
    with OperationCounter() as counter:
        task()
    return counter.counts["all"]


def step_benchmark(data: Data, settings: Settings) -> dict:
    """Step throughput and its breakdown (section b)."""
    trainer = build_trainer(data, settings, settings.n_prototypes)
    tasks = step_tasks(trainer, training_batch(data, settings))
    counts = {name: operations(task) for name, task in tasks.items()}
    samples = interleaved_times(tasks, torch.device(settings.device), settings.warmup, settings.repeats)
    seconds = medians(samples)
    outside = seconds["augment"] + seconds["objectives"] + seconds["optimizer"]
    return {
        "images_per_second": settings.batch_size / seconds["step"],
        "median_seconds": seconds,
        "rest_seconds": seconds["step"] - seconds["forward_backward"] - outside,
        "outside_share": 1.0 - seconds["forward_backward"] / seconds["step"],
        "outside_share_of_parts": outside / seconds["step"],
        "operations": counts,
        "seconds": samples,
    }


# ---------------------------------------------------------------- the report


def step_section(b: dict, batch: int, device: str) -> list[str]:
    """Section b): step throughput, its breakdown, its operation counts and the share outside the networks."""
    seconds, counts = b["median_seconds"], b.get("operations", {})
    rows = [
        ("augmentation (`MultiCropAugmenter`)", "augment"),
        ("networks' forward + backward (loss = sum of outputs)", "forward_backward"),
        ("objectives forward + backward (Sinkhorn, SwAV, MI, penalty)", "objectives"),
        ("Adam update", "optimizer"),
    ]
    share = b["outside_share"]

    def count(name: str) -> str:
        return f"{counts[name]:,}" if name in counts else "-"

    return [
        f"## b) Training step (`Trainer.step`, batch {batch})",
        "",
        f"Full step: {seconds['step'] * 1e3:,.0f} ms, **{b['images_per_second']:,.1f} images/s**, "
        f"{count('step')} ATen operations.",
        "",
        "| part | ms | share of step | ATen operations |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {seconds[name] * 1e3:,.1f} | {seconds[name] / seconds['step']:.1%} | "
            f"{count(name)} |"
            for label, name in rows
        ],
        "| rest (step minus the above: prototype normalisation, zero_grad, glue) "
        f"| {b['rest_seconds'] * 1e3:,.1f} | {b['rest_seconds'] / seconds['step']:.1%} | - |",
        "",
        f"Share outside the networks' forward and backward: 1 - fwd+bwd / step = **{share:.1%}** "
        f"(CPU target <= {OUTSIDE_SHARE_TARGET:.0%}: {verdict(share <= OUTSIDE_SHARE_TARGET, device)}). The "
        "parts timed on their own (augmentation + objectives + Adam) add up to "
        f"{b['outside_share_of_parts']:.1%} of the step; the *rest* row, a difference, also carries the "
        "timing noise of the two large figures. On a GPU, every ATen operation costs the host a kernel "
        "launch of some microseconds whatever its size; a step whose launches take longer than the GPU's "
        "work is bound by the host.",
        "",
    ]
