"""Communication and scaling of training under ``torch.distributed`` (``torchrun``).

a) The collectives of a training step and their bytes, by source: a real fit's trainer of the published
   configuration (ResNet-18 width 64, 1000 prototypes, projection 128, head 1024, 10 clusters, 2x28 + 4x18
   crops of 32x32 RGB images, random uint8 images) in 2 gloo processes, counted by wrapping
   ``torch.distributed``'s Python collectives (:mod:`benchmarks.distributed.collectives`) over whole
   epochs, one BatchNorm re-estimation and an epoch with a head mask. DistributedDataParallel's gradient
   all-reduce (C++) is the parameters' gradient bytes.
b) The step time on this CPU of 1 process with the global batch B beside 2 gloo processes with B/2 each.
c) An on-paper estimate for 8 GPUs over NVLink and over 100 Gb/s Ethernet, from those counts and the
   single-GPU step time measured on an H200 (``results/epochs_h200.md``), by
   :mod:`benchmarks.distributed.estimate`.

    python -m benchmarks.distributed --output benchmarks/results/distributed_cpu

The spawned processes run :mod:`benchmarks.distributed.workers`; ``python -m benchmarks.distributed.gpu``
times the one-rank NCCL step on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch.multiprocessing as mp

from benchmarks.common import cpu_seconds, machine
from benchmarks.distributed.collectives import PER_STEP
from benchmarks.distributed.estimate import GPUS, H200_STEP, estimate, estimate_lines
from benchmarks.distributed.workers import count_worker, free_port, timing_worker

#: the timed runs, as (processes, torch threads each), on the same global batch
TIMING_RUNS = ((1, 2), (1, 1), (2, 1))
#: the source of the BatchNorm layers' all-gathers, one per layer call
NORM_SOURCE = "BatchNorm sync, forward"


def spawn(worker, processes: int, *args) -> dict:
    """Run ``worker(rank, *args, results)`` in ``processes`` fresh processes; their results by rank."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(worker, args=(*args, results), nprocs=processes, start_method="spawn")
        return dict(results)


def per_step(counted: dict) -> list[dict]:
    """The collectives of one step of the steady epoch (epoch 2), and the head-bank size of the epoch with
    a head mask, per step (rows ``source, function, calls, bytes``)."""
    steps = counted["steps_per_epoch"]
    rows = [row for row in counted["tables"]["epoch 2"] if row["source"] in PER_STEP]
    rows += [row for row in counted["tables"]["epoch with a head mask"] if row["source"] == "head-bank size"]
    return [{**row, "calls": row["calls"] / steps, "bytes": row["bytes"] / steps} for row in rows]


def timing(batch: int, steps: int) -> list[dict]:
    """Step seconds of every run of :data:`TIMING_RUNS` at the global batch ``batch``, each with the share
    of the CPU that other processes took meanwhile."""
    runs = []
    for processes, threads in TIMING_RUNS:
        busy, own = cpu_seconds()
        start = time.perf_counter()
        result = spawn(timing_worker, processes, processes, threads, free_port(), batch, steps)
        wall = time.perf_counter() - start
        busy_after, own_after = cpu_seconds()
        others = ((busy_after - busy) - (own_after - own)) / ((os.cpu_count() or 1) * wall)
        runs.append(
            {
                "processes": processes,
                "threads": threads,
                "images": batch // processes,
                "wall_s": max(statistics.median(result[r]["wall"]) for r in result),
                "cpu_s": sum(statistics.median(result[r]["cpu"]) for r in result),
                "operations": result[0]["operations"],
                "others_share": max(0.0, others),
            }
        )
    return runs


def collective_lines(counted: dict, rows: list[dict], batch: int) -> list[str]:
    """Section a)."""
    grad, buckets = counted["gradient_bytes"], counted["buckets"]
    lines = [
        "## a) Collectives of one training step (2 gloo processes, global batch "
        f"{batch}, {batch // 2} images each)",
        "",
        "Counted over the 2nd epoch of a real fit's trainer (the 1st builds DistributedDataParallel); "
        "the head-bank row comes from an epoch with a head mask (STL-10's case). Bytes: one rank's "
        "contribution (the tensor it all-reduces, broadcasts or contributes to a gather).",
        "",
        "| source | function (gloo) | calls per step | bytes per rank per step |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {r['source']} | {r['function']} | {r['calls']:g} | {r['bytes']:,.0f} |" for r in rows]
    lines += [
        f"| DDP gradient all-reduce (C++ reducer, not seen from Python) | all_reduce, {len(buckets)} "
        f"buckets | {len(buckets)} | {grad:,} |",
        "",
        f"The gradient row is the bytes of the {counted['parameters']:,} parameters that DDP reduces"
        f" ({', '.join(counted['gradient_dtypes'])}; bucket sizes {buckets} bytes; every bucket at "
        "every step, whether its parameters were used or not). The other rows are what Python "
        "called. Their sizes depend neither on the per-rank batch nor on the number of ranks: a "
        "BatchNorm layer gathers (count, mean, sum of squares) per (view, channel), the mutual "
        "information all-reduces its (6 x 10) x (6 x 1000) joint, Sinkhorn-Knopp the (2, 1, 1000) "
        "maxima and sums of its 3 iterations and the global batch size. gloo runs a gather's "
        "backward as one scatter per rank; NCCL as one reduce-scatter.",
        "",
    ]
    for phase, title in (
        ("epoch 2", "once per epoch"),
        ("evaluation", "per evaluation (each epoch with an eval_set)"),
        ("epoch 1", "once, building DistributedDataParallel"),
        ("start of fit", "once, at the start of a fit"),
    ):
        extra = [r for r in counted["tables"][phase] if r["source"] not in PER_STEP]
        if phase == "epoch 1":
            extra = [r for r in extra if r["source"].startswith("DDP construction")]
        lines += [
            f"- {title}: "
            + "; ".join(
                f"{r['source']}: {r['calls']} x {r['function']}, "
                + ("a pickled object" if "object" in r["function"] else f"{r['bytes']:,} bytes")
                for r in extra
            )
        ]
    lines += [
        "- a head mask adds, once per epoch, the all-reduce of the labelled count, and makes DDP "
        "search the graph for unused parameters (the head between bank updates) at every step, in C++"
    ]
    return [*lines, ""]


def timing_lines(runs: list[dict], batch: int, norm_calls: float) -> list[str]:
    """Section b); ``norm_calls``: BatchNorm layer calls per step."""
    lines = [
        f"## b) Step time on this CPU (global batch {batch}, {os.cpu_count()} cores)",
        "",
        "| processes x images | torch threads each | step (s, median; slowest rank) | CPU s per step "
        "(all processes) | ATen operations per step and process (not views) | CPU taken by other "
        "processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        ops = run["operations"]
        lines.append(
            f"| {run['processes']} x {run['images']} | {run['threads']} | {run['wall_s']:.2f} | "
            f"{run['cpu_s']:.2f} | {ops['all']:,} ({ops['not views']:,}) | "
            f"{run['others_share']:.0%} |"
        )
    threaded, single, split = runs
    wall, work = split["wall_s"] / threaded["wall_s"], split["cpu_s"] / single["cpu_s"]
    extra = (split["operations"]["not views"] - single["operations"]["not views"]) / norm_calls
    text = (
        f"2 gloo processes x {split['images']} beside 1 process x {batch}: **{wall:.2f}x** the step time "
        f"of the process of {threaded['threads']} threads on the same cores, and **{work:.2f}x** the CPU "
        "work of the process of 1 thread (CPU seconds summed over the processes; those of the threaded "
        "process also count OpenMP threads spinning while they wait for a core, so they measure no work "
        "on a loaded machine). The split is no speed-up here, its processes sharing the cores of the "
        "single one; the CPU-work ratio is its overhead (collectives, the synchronised BatchNorm, "
        "smaller matrices) and the wall-time ratio depends on how the cores were shared with other "
        f"processes (last column). A rank runs {operations_ratio(runs):.1f}x the non-view operations of "
        f"the single process, {extra:.0f} more per BatchNorm layer call: the synchronised BatchNorm "
        "computes its statistics, their combination and its backward in small operations (and gloo "
        "emulates the gather's backward with scatters), where one process runs one fused batch-norm "
        "kernel each way; DDP's gradient buckets add a copy per parameter."
    )
    return [*lines, "", text, ""]


def operations_ratio(runs: list[dict]) -> float:
    """A rank's non-view operations per step over those of one process (the first and last timed runs)."""
    return runs[-1]["operations"]["not views"] / runs[0]["operations"]["not views"]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--batch", type=int, default=32, help="global batch of the counting and timing runs")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per timing run")
    parser.add_argument("--output", help="write OUTPUT.md and OUTPUT.json")
    args = parser.parse_args()
    start = time.perf_counter()
    counted = spawn(count_worker, 2, free_port(), args.batch, 3)
    if counted[0]["tables"] != counted[1]["tables"]:
        raise RuntimeError("the two ranks ran different collectives")
    rows = per_step(counted[0])
    runs = timing(args.batch, args.steps)
    published = [row for row in rows if row["source"] != "head-bank size"]  # CIFAR-10 has no head mask
    estimates = estimate(published, counted[0]["gradient_bytes"], len(counted[0]["buckets"]))
    about = machine()
    lines = [
        "# Training under torch.distributed: collectives, bytes and scaling",
        "",
        f"- Machine: {about['cpu']}, {about['cores']} cores, no GPU; torch {about['torch']}; "
        f"{about['date']}.",
        "- Configuration: ResNet-18 of width 64, 1000 prototypes, projection 128, cluster head 1024, "
        "10 clusters; 2 x 28x28 + 4 x 18x18 crops of random 32x32 RGB uint8 images; float32 on the CPU.",
        "- Command: `python -m benchmarks.distributed --output benchmarks/results/distributed_cpu`.",
        "",
        *collective_lines(counted[0], rows, args.batch),
        *timing_lines(runs, args.batch, sum(r["calls"] for r in rows if r["source"] == NORM_SOURCE)),
        *estimate_lines(estimates, counted[0]["gradient_bytes"], operations_ratio(runs)),
        f"Total benchmark time: {(time.perf_counter() - start) / 60:.1f} min.",
    ]
    print("\n".join(lines))
    if args.output:
        Path(args.output + ".md").write_text("\n".join(lines) + "\n")
        report = {
            "machine": about,
            "batch": args.batch,
            "counted": counted[0],
            "per_step": rows,
            "timing": runs,
            "estimate": estimates,
            "gpus": GPUS,
            "h200_step_s": H200_STEP,
        }
        Path(args.output + ".json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
