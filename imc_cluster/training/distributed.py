"""Training over several processes (``torchrun``): one global batch split over the ranks, one method.

Under ``torchrun`` (or inside any initialised ``torch.distributed`` process group of more than one
process), every rank holds the whole training set and trains one replica of the network:

* the global batch of ``batch_size`` images is split into equal slices, one per rank, drawn from one
  shuffled order that every rank draws alike (:meth:`World.epoch_order`); each rank augments its slice
  with its own random stream (:meth:`World.augmentation_seed`);
* :class:`~torch.nn.parallel.DistributedDataParallel` averages the parameter gradients over the ranks;
* the Sinkhorn-Knopp codes and the mutual information are computed over the global batch (the objectives'
  ``group``), and every BatchNorm layer normalises each view with the statistics of that view over the
  global batch (:func:`~imc_cluster.model.batchnorm.synchronized_batch_norm`),

so that ``N`` ranks with ``B / N`` images each compute the loss and the gradients of one process with
``B`` images. Rank 0 alone writes checkpoints, history and logs and runs the callbacks.

The random streams of a distributed fit are seeded anew at every epoch from the run's seed, the epoch and
the rank, so a run resumed from a checkpoint continues exactly, with any number of ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "World",
    "current_world",
    "is_main",
    "device_for",
    "init_from_environment",
    "leave",
    "first_on_each_node",
    "replicate",
    "TIMEOUT",
]

#: how long a collective waits for the other ranks before the job fails, rather than hangs, when one of
#: them died (overridable with the environment variable IMC_CLUSTER_DIST_TIMEOUT, in seconds)
TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("IMC_CLUSTER_DIST_TIMEOUT", 600)))


@dataclass(frozen=True)
class World:
    """The processes of a distributed fit, as one rank sees them.

    Attributes
    ----------
    group : ProcessGroup
        The process group (the default one).
    rank, size : int
        This process's rank and the number of ranks.
    """

    group: object
    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, which writes files and runs the callbacks."""
        return self.rank == 0

    def slice_of(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size`` images."""
        if batch_size % self.size:
            raise ValueError(
                f"batch_size={batch_size} (the global batch, capped at the number of samples) must be a "
                f"multiple of the {self.size} processes, which each train on an equal slice of it."
            )
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def epoch_order(self, n_samples: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
        """The shuffled order of the samples in ``epoch``: the same on every rank."""
        generator = torch.Generator().manual_seed(_mix(seed, epoch, -1))
        return torch.randperm(n_samples, generator=generator).to(device)

    def augmentation_seed(self, seed: int, epoch: int) -> int:
        """The seed of this rank's augmentation stream in ``epoch``."""
        return _mix(seed, epoch, self.rank)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over the ranks (in place)."""
        dist.all_reduce(tensor, group=self.group)
        return tensor.div_(self.size)

    def total(self, count: int, device: torch.device) -> int:
        """The sum of ``count`` over the ranks."""
        total = torch.tensor([count], device=device)
        dist.all_reduce(total, group=self.group)
        return int(total)

    def maximum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor``'s element-wise maximum over the ranks (in place)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return tensor

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers of ``module`` (BatchNorm statistics), on every rank."""
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0, group=self.group)


class _LossTerms(nn.Module):
    """The loss terms of a training step as a module of the trainer's model (what DistributedDataParallel
    wraps, so that the cluster head on the bank runs inside its forward)."""

    def __init__(self, model: nn.Module, losses) -> None:
        super().__init__()
        self.model = model
        self.terms = losses

    def forward(
        self, views: list[torch.Tensor], batch_size: int, head_mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        return self.terms(views, batch_size, head_mask)


def replicate(model: nn.Module, losses, world: World, banked: bool) -> DistributedDataParallel:
    """A DistributedDataParallel replica of ``model`` whose forward is ``losses(views, batch_size,
    head_mask)``, the loss terms of a training step; ``banked`` lets parameters go unused in a step (the
    cluster head between the updates of the head bank), which then keep no gradient, as in one process."""
    device = next(model.parameters()).device
    return DistributedDataParallel(
        _LossTerms(model, losses),
        device_ids=[device.index] if device.type == "cuda" else None,
        process_group=world.group,
        find_unused_parameters=banked,
    )


def _mix(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed from a run's seed, an epoch and a stream (a rank, or -1 for the shared order)."""
    value = (seed * 1_000_003 + epoch) * 65_537 + stream + 1
    return value % (2**63 - 1)


def is_main(world: World | None) -> bool:
    """Whether this process writes, prints and runs callbacks: rank 0 of ``world``, or the only process."""
    return world is None or world.is_main


def current_world() -> World | None:
    """The :class:`World` of the initialised default process group, or None when there is none or it has a
    single process (training is then the plain single-process one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return World(dist.group.WORLD, dist.get_rank(), dist.get_world_size())


def device_for(world: World | None, requested: str) -> str:
    """The training device of this rank for the ``device`` parameter ``requested``: under NCCL, "auto"
    and "cuda" mean the GPU of the local rank (``LOCAL_RANK``); under gloo, "auto" means the CPU."""
    if world is None:
        return requested
    nccl = dist.get_backend(world.group) == "nccl"
    if nccl and requested == "cpu":
        raise ValueError(
            "device='cpu' in an NCCL process group: NCCL runs on GPUs only; train on the CPU in "
            "a gloo process group (imc-cluster under torchrun: --dev cpu)."
        )
    if requested not in ("auto", "cuda"):
        return requested
    if nccl:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu" if requested == "auto" else requested


def init_from_environment(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), unless
    one is initialised already: NCCL with one GPU per rank (``LOCAL_RANK``) when CUDA is available and
    ``device`` is not "cpu", else gloo.

    Returns
    -------
    bool
        Whether this call initialised the group (its caller then destroys it).
    """
    if int(os.environ.get("WORLD_SIZE", 1)) < 2 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError(
            "WORLD_SIZE > 1 asks for distributed training, but this PyTorch build has no torch.distributed."
        )
    nccl = device != "cpu" and torch.cuda.is_available()
    if nccl:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if nccl else "gloo", timeout=TIMEOUT)
    return True


def leave() -> None:
    """Leave the process group that :func:`init_from_environment` joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def first_on_each_node():
    """Run the block on the first process of every node (``LOCAL_RANK`` 0) before the others, e.g. to
    download or cache a data set once per node; without a process group, just run it. Every rank waits at
    one barrier: the first ones after the block, the others before it."""
    world = current_world()
    first = world is None or int(os.environ.get("LOCAL_RANK", world.rank)) == 0
    if not first:
        dist.barrier(group=world.group)
    try:
        yield
    finally:
        if first and world is not None:
            dist.barrier(group=world.group)
