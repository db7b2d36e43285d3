"""On one GPU: the training step of the published CIFAR-10 configuration, plain and through the distributed
path (DistributedDataParallel, BatchNorm statistics gathered over the group, the objectives' all-reduces)
in a one-rank NCCL group: what distribution costs a GPU before any communication between GPUs.

    python -m benchmarks.distributed.gpu --output benchmarks/results/distributed_h200

Prints the median milliseconds per step of each and their ratio; ``--output`` writes OUTPUT.md and
OUTPUT.json. Needs a CUDA GPU (run it through benchmarks/gpu_checks.sh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from benchmarks.common import fit_trainer
from benchmarks.distributed.workers import free_port
from imc_cluster import IMCSwAVClustering
from imc_cluster.data.placement import gather
from imc_cluster.training.distributed import World
from imc_cluster.training.trainer import Trainer


def trainer(images: np.ndarray, batch: int) -> tuple[Trainer, torch.Tensor]:
    """The trainer that ``fit`` builds for the published configuration, and the data on the GPU."""
    estimator = IMCSwAVClustering(10, batch_size=batch, device="cuda", random_state=0)
    _, _, run, values = fit_trainer(estimator, images)
    return run, values.cuda()


def milliseconds_per_step(run: Trainer, data: torch.Tensor, batch: int, steps: int) -> float:
    """Median wall time of ``steps`` training steps, after 5 untimed ones."""
    times = []
    run.model.train()
    for step in range(5 + steps):
        index = torch.randint(0, data.shape[0], (batch,), device=data.device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        run.step(gather(data, index, data.device))
        torch.cuda.synchronize()
        if step >= 5:
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=256, help="images per step")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each")
    parser.add_argument("--output", help="write OUTPUT.md and OUTPUT.json")
    args = parser.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (4096, 32, 32, 3), dtype=np.uint8)
    dist.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{free_port()}",
        rank=0,
        world_size=1,
        device_id=torch.device("cuda", torch.cuda.current_device()),
    )
    try:
        plain, data = trainer(images, args.batch)
        distributed, _ = trainer(images, args.batch)
        distributed.world, distributed.group = World(dist.group.WORLD, 0, 1), dist.group.WORLD
        result = {
            "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "batch": args.batch,
            "plain_ms": milliseconds_per_step(plain, data, args.batch, args.steps),
            "distributed_ms": milliseconds_per_step(distributed, data, args.batch, args.steps),
        }
    finally:
        dist.destroy_process_group()
    result["ratio"] = result["distributed_ms"] / result["plain_ms"]
    text = (
        f"# One-rank NCCL step against the plain step\n\n{result['gpu']}, torch {result['torch']}; "
        f"ResNet-18 width 64, 1000 prototypes, 2x28 + 4x18 crops, batch {args.batch}, random images; "
        f"median of {args.steps} steps.\n\n| step | ms |\n|---|---:|\n| plain | {result['plain_ms']:.1f} |\n"
        f"| distributed, 1 rank | {result['distributed_ms']:.1f} |\n\nRatio {result['ratio']:.2f}.\n"
    )
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.output}.md").write_text(text)
        Path(f"{args.output}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
