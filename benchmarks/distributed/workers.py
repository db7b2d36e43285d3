"""What each process of ``python -m benchmarks.distributed`` runs: the estimator, trainer and data of a fit
in this process's world, the counting worker of section a) and the timing worker of section b).

The workers live in this module rather than in ``__main__`` so that the processes that
``torch.multiprocessing`` spawns can import them by name.
"""

from __future__ import annotations

import contextlib
import socket
import time

import numpy as np
import torch
import torch.distributed as dist

from benchmarks.common import OperationCounter, fit_trainer
from benchmarks.distributed.collectives import CollectiveLog
from imc_cluster import IMCSwAVClustering
from imc_cluster.data.placement import gather
from imc_cluster.training.distributed import current_world

#: the published CIFAR-10 configuration (the estimator's defaults, spelled out)
CONFIGURATION = dict(
    n_clusters=10,
    backbone="resnet18",
    backbone_width=64,
    n_prototypes=1000,
    projection_dim=128,
    head_hidden_dim=1024,
    n_large_crops=2,
    n_small_crops=4,
    large_crop_size=28,
    small_crop_size=18,
)
#: phases of the counting run, in order
PHASES = ("start of fit", "epoch 1", "epoch 2", "evaluation", "epoch with a head mask")


def random_images(n: int) -> np.ndarray:
    """``n`` random uint8 32x32 RGB images, the same in every process."""
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def build(images: np.ndarray, batch_size: int):
    """The parameters, fitted state, trainer and training data that ``fit`` builds for ``images`` in this
    process's world (``batch_size`` is the global batch)."""
    est = IMCSwAVClustering(**CONFIGURATION, batch_size=batch_size, device="cpu", random_state=0)
    return fit_trainer(est, images, current_world())


@contextlib.contextmanager
def process_group(rank: int, world: int, port: int):
    """A gloo group of ``world`` processes on this machine (none for one process)."""
    if world == 1:
        yield
        return
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def count_worker(rank: int, port: int, batch: int, batches: int, results) -> None:
    """Rank ``rank`` of 2: the collectives of each phase of :data:`PHASES`, on ``batches`` global batches of
    ``batch`` images."""
    torch.set_num_threads(1)
    with process_group(rank, 2, port), CollectiveLog() as log:
        log.phase = "start of fit"
        params, fitted, trainer, values = build(random_images(batches * batch), batch)
        for phase in ("epoch 1", "epoch 2"):
            log.phase = phase
            trainer.train_epoch(values)
        log.phase = "evaluation"
        fitted.recalibrate(params, values, trainer.world)
        log.phase = "epoch with a head mask"
        trainer.train_epoch(values, head_mask=torch.arange(values.shape[0]) % 4 == 0)
        replica = trainer._replicas[False]
        parameters = [p for p in replica.parameters() if p.requires_grad]
        results[rank] = {
            "tables": {
                phase: [
                    {"source": s, "function": f, "calls": c, "bytes": b}
                    for (s, f), (c, b) in log.table(phase).items()
                ]
                for phase in PHASES
            },
            "gradient_bytes": sum(p.numel() * p.element_size() for p in parameters),
            "gradient_dtypes": sorted({str(p.dtype) for p in parameters}),
            "parameters": sum(p.numel() for p in parameters),
            "buffer_bytes": sum(b.numel() * b.element_size() for b in replica.buffers()),
            "buckets": [
                b.buffer().numel() * b.buffer().element_size()
                for b in replica.reducer._get_zeros_like_grad_buckets()
            ],
            "steps_per_epoch": trainer.steps_per_epoch(values.shape[0]),
        }


def timing_worker(rank: int, world: int, threads: int, port: int, batch: int, steps: int, results) -> None:
    """Wall and CPU seconds of ``steps`` training steps (after one untimed) of rank ``rank`` of ``world``
    processes of ``threads`` threads, global batch ``batch``, and the ATen operations of one more step."""
    torch.set_num_threads(threads)
    with process_group(rank, world, port):
        _, _, trainer, values = build(random_images((steps + 2) * batch), batch)
        trainer.model.train()
        batches = [
            gather(values, index, values.device)
            for index in trainer.epoch_batches(values.shape[0], values.device)
        ]
        trainer.step(batches[0])
        wall, cpu = [], []
        for rows in batches[1:-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.step(rows)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        with OperationCounter() as counter:
            trainer.step(batches[-1])
        results[rank] = {"wall": wall, "cpu": cpu, "operations": counter.counts}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
