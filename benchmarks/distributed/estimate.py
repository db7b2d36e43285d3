"""The on-paper estimate of ``python -m benchmarks.distributed`` (section c): communication time per step
and scaling efficiency of 8 GPUs, from the collectives counted on the CPU and the single-GPU step time of an
H200.

Model. Each collective costs a fixed latency plus the bytes a rank sends (:func:`wire_bytes`) over the
link's effective bus bandwidth. ``N`` GPUs split the global batch; a GPU computes its slice in ``c``, between
``T1 / N`` (a compute-bound step that shrinks with the batch) and ``T1`` (a step bound by the host's kernel
launches, which does not shrink). Without overlap ``TN = c + all communication``; with the overlap of
DistributedDataParallel the gradient buckets are reduced during the backward pass (2/3 of ``c``) and only
their excess remains, while every other collective blocks the step (the BatchNorm statistics, the codes
and the joint are needed before the computation can go on). Efficiency ``T1 / (N TN)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.distributed.collectives import nccl_step, wire_bytes

GPUS = 8
#: seconds per step of one H200 at batch 256: 13.32 s per 195-step epoch (results/epochs_h200.md, eager)
H200_STEP = 13.32 / 195
#: share of a step's computation that is the backward pass, during which DDP reduces gradient buckets
BACKWARD_SHARE = 2 / 3


@dataclass(frozen=True)
class Link:
    """An interconnect: effective bus bandwidth (bytes/s) and latency per collective (s, low and high)."""

    name: str
    bandwidth: float
    latency: tuple[float, float]


LINKS = (
    Link("NVLink, 8 GPUs in one node", 350e9, (20e-6, 30e-6)),
    Link("100 Gb/s Ethernet, 8 nodes of 1 GPU", 10e9, (50e-6, 100e-6)),
)


def communication(
    rows: list[dict], gradient_bytes: int, buckets: int, link: Link, latency: float
) -> tuple[float, float]:
    """Seconds per step of the blocking collectives (NCCL's, from gloo's ``rows``) and of the gradient
    all-reduce, over ``GPUS`` ranks."""
    blocking = sum(
        row["calls"] * latency + wire_bytes(row["function"], row["bytes"], GPUS) / link.bandwidth
        for row in nccl_step(rows)
    )
    gradients = buckets * latency + wire_bytes("all_reduce", gradient_bytes, GPUS) / link.bandwidth
    return blocking, gradients


def efficiency(compute: float, blocking: float, gradients: float, overlap: bool) -> float:
    """``T1 / (N TN)`` for a per-GPU computation of ``compute`` seconds."""
    exposed = max(0.0, gradients - BACKWARD_SHARE * compute) if overlap else gradients
    return H200_STEP / (GPUS * (compute + blocking + exposed))


def estimate(rows: list[dict], gradient_bytes: int, buckets: int) -> list[dict]:
    """For every link: collectives and bytes sent per GPU per step, communication seconds at its low and
    high latency, and the efficiency without and with overlap, from the worst case (host-bound ``c = T1``,
    high latency) to the best (compute-bound ``c = T1 / N``, low latency)."""
    nccl = nccl_step(rows)
    results = []
    for link in LINKS:
        low, high = (communication(rows, gradient_bytes, buckets, link, latency) for latency in link.latency)
        result = {
            "link": link.name,
            "bandwidth": link.bandwidth,
            "latency": link.latency,
            "blocking_calls": sum(r["calls"] for r in nccl),
            "gradient_calls": buckets,
            "blocking_wire": sum(wire_bytes(r["function"], r["bytes"], GPUS) for r in nccl),
            "gradient_wire": wire_bytes("all_reduce", gradient_bytes, GPUS),
            "blocking_s": (low[0], high[0]),
            "gradients_s": (low[1], high[1]),
        }
        for overlap in (False, True):
            result["overlap" if overlap else "no_overlap"] = (
                efficiency(H200_STEP, *high, overlap),
                efficiency(H200_STEP / GPUS, *low, overlap),
            )
        results.append(result)
    return results


def estimate_lines(results: list[dict], gradient_bytes: int, operations_ratio: float) -> list[str]:
    """Section c); ``operations_ratio`` is a rank's non-view operations over one process's (section b)."""
    t1, per_gpu = H200_STEP * 1e3, 256 // GPUS
    links = [
        f"- {r['link']}: {r['bandwidth'] / 1e9:g} GB/s effective bus bandwidth, "
        f"{r['latency'][0] * 1e6:g}-{r['latency'][1] * 1e6:g} us per collective."
        for r in results
    ]
    lines = [
        f"## c) On-paper estimate for {GPUS} GPUs (global batch 256, {per_gpu} images per GPU)",
        "",
        "Assumptions:",
        "",
        f"- T1 = {t1:.1f} ms: the single-H200 step at batch 256 (13.32 s per 195-step epoch, "
        "`results/epochs_h200.md`, measured before the objectives were batched into fewer kernels).",
        f"- Computation per GPU at batch {per_gpu}: between T1/{GPUS} = {t1 / GPUS:.1f} ms (a step "
        f"bound by the GPU, which shrinks with the batch) and T1 = {t1:.1f} ms (a step bound by the "
        "host's kernel launches, which does not: on the H200 an epoch took 14.8 s with a width-8 "
        f"ResNet and 13.3 s with width 64, `results/speed_h200.md`). A batch of {per_gpu} does not fill "
        f"an H200, and a rank's step runs {operations_ratio:.1f}x the non-view operations of one "
        "process's (section b), so the computation per GPU lies in that range, nearer its host-bound "
        "end for the step as it is.",
        "- NCCL collectives, one at a time (section a's calls; a BatchNorm gather's backward is one "
        "reduce-scatter); ring volumes per GPU: all-reduce 2(N-1)/N x bytes, all-gather and "
        "reduce-scatter (N-1) x the per-rank bytes, broadcast the bytes once; time = latency + volume / "
        "bus bandwidth.",
        *links,
        "- NVLink: an H100/H200 HGX node (NVLink 4, 450 GB/s per direction; NCCL's all-reduce reaches "
        "about 350 GB/s on large messages). Ethernet: one GPU per node, so every ring hop crosses the "
        "network (nodes of several NVLinked GPUs do better).",
        f"- No overlap: TN = c + all communication. Overlap: DDP reduces the {gradient_bytes / 1e6:.1f} "
        "MB of gradients while the backward pass (2/3 of c) runs; every other collective blocks the "
        "step (BatchNorm statistics, codes and joint are needed before the computation goes on). "
        "Efficiency T1 / (N TN); the speed-up over one GPU is N times it.",
        "",
        "| link | blocking collectives: calls, MB sent per GPU, ms | gradient all-reduce: calls, MB, ms "
        "| efficiency, no overlap | efficiency, DDP overlap |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        blocking, gradients = (
            f"{r[key][0] * 1e3:.1f}-{r[key][1] * 1e3:.1f} ms" for key in ("blocking_s", "gradients_s")
        )
        efficiencies = (f"{r[key][0]:.0%}-{r[key][1]:.0%}" for key in ("no_overlap", "overlap"))
        lines.append(
            f"| {r['link']} | {r['blocking_calls']:.0f}, {r['blocking_wire'] / 1e6:.1f} MB, "
            f"{blocking} | {r['gradient_calls']}, {r['gradient_wire'] / 1e6:.1f} MB, {gradients} | "
            + " | ".join(efficiencies)
            + " |"
        )
    return [
        *lines,
        "",
        "Each efficiency runs from the host-bound computation at the high latency to the "
        "compute-bound one at the low latency. The blocking collectives are many small messages, "
        "bound by latency; the gradient all-reduce is one large one, bound by bandwidth.",
        "",
    ]
