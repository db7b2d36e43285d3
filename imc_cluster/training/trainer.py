"""The trainer: one optimiser step per batch on the sum of the three IMC-SwAV objectives.

Data stay on the training device as one tensor (uint8 images or float32 vectors); each step gathers a
batch by index, augments it there, and runs the model on every view. Nothing in the step waits for the
device: losses and progress measures are accumulated as tensors and read once per epoch
(:mod:`~imc_cluster.training.progress`), and the first non-finite step is recorded on the device too. Several
cluster heads train together, each on its own loss; the best of an epoch is the one the network predicts with.

With a head mask (STL-10, where about 12 of a batch of 256 images are labelled), the cluster head learns
from labelled images only, and, as in the published code, over at least one batch size of them at a time:
a :class:`HeadBank` keeps the detached features and prototype scores of the labelled images of
consecutive batches, and when it holds a batch size of them the step adds the head's terms over the whole
bank and empties it. The encoder and the prototypes learn from every image at every step.

A network of candidate numbers of clusters trains the heads of every candidate together, each on its own
loss; the epoch's record then holds the heads' entries per candidate.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from imc_cluster.data.placement import gather
from imc_cluster.model.batchnorm import synchronized_batch_norm
from imc_cluster.model.networks import IMCSwAVNet
from imc_cluster.training.distributed import World, replicate
from imc_cluster.training.headbank import HeadBank
from imc_cluster.training.progress import EpochTotals
from imc_cluster.training.terms import loss_terms

__all__ = ["TrainingConfig", "Trainer", "DivergenceError"]


class DivergenceError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of the optimisation and of the objectives (the estimator's parameters of the same
    names; their defaults are the estimator's)."""

    batch_size: int
    learning_rate: float
    betas: tuple[float, float]
    weight_decay: float
    warmup_updates: int
    lr_milestones: tuple[int, ...]
    lr_gamma: float
    n_large_crops: int
    temperature: float
    sinkhorn_epsilon: float
    sinkhorn_iterations: int
    marginal_weight: float
    logit_penalty: float
    logit_threshold: float


class Trainer:
    """Optimiser, learning-rate schedule and the epoch loop of one model.

    Parameters
    ----------
    model : IMCSwAVNet
        The network, already on ``device``.
    augment : callable
        ``augment(batch, generator)`` returns the view groups of a batch, each view-major.
    config : TrainingConfig
        Optimisation settings.
    generator : torch.Generator
        Source of all training randomness (shuffling and augmentation), on ``device``.
    autocast_dtype : torch.dtype or None
        Mixed-precision dtype for the networks (bf16 on CUDA), or None for float32.
    world : World, default=None
        The ranks of a distributed fit (:mod:`~imc_cluster.training.distributed`), or None for one process.
        Each rank then trains on its slice of every global batch of ``config.batch_size`` images, through
        DistributedDataParallel, with the objectives and the BatchNorm statistics over the global batch.
    channels_last : bool, default=False
        Feed image views in channels-last memory format (the model must be converted too); faster
        convolutions on GPUs.
    compile : bool, default=False
        Run the forward pass through ``torch.compile(model)``.
    """

    def __init__(
        self,
        model: IMCSwAVNet,
        augment: Callable,
        config: TrainingConfig,
        generator: torch.Generator,
        autocast_dtype: torch.dtype | None = None,
        world: World | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.augment = augment
        self.config = config
        self.generator = generator
        self.autocast_dtype = autocast_dtype
        self.world = world
        self.group = None if world is None else world.group
        self._replicas: dict[bool, DistributedDataParallel] = {}
        # one fused kernel for every parameter, on CUDA and on the CPU (a third of the multi-tensor
        # kernels' time there): not one launch per parameter
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=config.learning_rate,
            betas=config.betas,
            weight_decay=config.weight_decay,
            fused=True,
        )
        self.updates = 0
        self.epoch = 0
        self.seed = int(generator.initial_seed())
        self.bank = HeadBank()
        self.bank_target = config.batch_size

    def learning_rate(self) -> float:
        """Learning rate of the next update: linear warm-up over updates, then steps at epoch milestones."""
        cfg = self.config
        warmup = min(1.0, (self.updates + 1) / cfg.warmup_updates) if cfg.warmup_updates else 1.0
        decay = cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_milestones), self.epoch)
        return cfg.learning_rate * warmup * decay

    def autocast(self) -> torch.autocast:
        """The mixed-precision context in which the networks run (disabled for float32 training)."""
        return torch.autocast(
            self.generator.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    def views(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """The augmented view groups of a batch of raw samples, image views in the networks' memory format."""
        return [
            v.contiguous(memory_format=self.memory_format) if v.dim() == 4 else v
            for v in self.augment(batch, self.generator)
        ]

    def objectives(
        self,
        scores: torch.Tensor,
        logits: torch.Tensor | Sequence[torch.Tensor] | None,
        head_scores: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss terms (:func:`~imc_cluster.training.terms.loss_terms`) of the networks' outputs, under
        this trainer's settings and over its ranks."""
        return loss_terms(scores, logits, self.config, self.group, head_scores)

    def losses(
        self, views: Sequence[torch.Tensor], batch_size: int, head_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one batch of views.

        With ``head_mask`` (B,) the masked images go to the bank, and the head's terms are those of the
        whole bank once it holds ``bank_target`` images (absent from the result before).
        """
        with self.autocast():
            features, scores, logits = self.forward(views, batch_size, head=head_mask is None)
        if head_mask is None:
            return self.objectives(scores, logits)
        self.bank.add(features, scores, head_mask)
        if self._bank_size() < self.bank_target:
            return self.objectives(scores, None)
        features, head_scores = self.bank.take()
        with self.autocast():
            logits = self.model.head_logits(features)
        return self.objectives(scores, logits, head_scores)

    def _bank_size(self) -> int:
        """Images in the bank, over every rank."""
        if self.world is None:
            return self.bank.size
        return self.world.total(self.bank.size, self.generator.device)

    def step(self, batch: torch.Tensor, head_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One optimiser update on a batch of raw samples (this rank's slice of the global batch in a
        distributed fit); returns the detached terms of :meth:`objectives` (the heads' only when they were
        updated)."""
        self.model.normalize_prototypes()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        terms = self.backward(self.views(batch), batch.shape[0], head_mask)
        if self.updates < self.config.warmup_updates:
            self.model.prototypes.weight.grad = None  # Adam skips parameters without a gradient
        self.optimizer.step()
        self.updates += 1
        return {name: value.detach() for name, value in terms.items()}

    def backward(
        self, views: Sequence[torch.Tensor], batch_size: int, head_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one batch of views (:meth:`losses`), with their gradients in the parameters'
        ``.grad``. In a distributed fit ``views`` are this rank's slice of the global batch, and the
        gradients those of the global batch (averaged over the ranks by DistributedDataParallel)."""
        with contextlib.ExitStack() as stack:
            losses = self.losses
            if self.world is not None:
                stack.enter_context(synchronized_batch_norm(self.model, self.group))
                losses = self._replica(head_mask is not None)
            terms = losses(views, batch_size, head_mask)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
        return terms

    def _replica(self, banked: bool) -> DistributedDataParallel:
        """The DistributedDataParallel replica that computes the loss terms of a step; with a head bank the
        head is left out of the steps that do not update it (on every rank alike)."""
        if banked not in self._replicas:
            self._replicas[banked] = replicate(self.model, self.losses, self.world, banked)
        return self._replicas[banked]

    def epoch_batches(self, n_samples: int, device: torch.device) -> list[torch.Tensor]:
        """Shuffled equal-size index batches of one epoch, on ``device`` (where the data are); the remainder
        (< batch size) is left out and is different every epoch. In a distributed fit, this rank's slices
        of the global batches of one order that every rank draws alike; the augmentation stream of the rank
        is then seeded for the epoch."""
        batch = self.batch_size(n_samples)
        kept = self.steps_per_epoch(n_samples) * batch
        if self.world is None:
            order = torch.randperm(n_samples, generator=self.generator, device=self.generator.device)
            return list(order[:kept].to(device).split(batch))
        rows = self.world.slice_of(batch)
        order = self.world.epoch_order(n_samples, self.seed, self.epoch, device)
        self.generator.manual_seed(self.world.augmentation_seed(self.seed, self.epoch))
        return [indices[rows] for indices in order[:kept].split(batch)]

    def steps_per_epoch(self, n_samples: int) -> int:
        """Optimiser updates in one epoch over ``n_samples``."""
        return n_samples // self.batch_size(n_samples)

    def batch_size(self, n_samples: int) -> int:
        """The (global) batch of an epoch over ``n_samples``: ``config.batch_size``, capped at the samples
        (in a distributed fit, at the largest multiple of the ranks that they hold)."""
        if self.config.batch_size <= n_samples:
            return self.config.batch_size
        if self.world is None:
            return n_samples
        if n_samples < self.world.size:
            raise ValueError(
                f"{n_samples} samples cannot be shared by {self.world.size} processes: every "
                "process trains on at least one sample of every batch."
            )
        return n_samples - n_samples % self.world.size

    def train_epoch(
        self,
        data: torch.Tensor,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Train one epoch on ``data`` (on the training device) and return the mean loss terms.

        Parameters
        ----------
        data : Tensor
            The whole training set, on the training device, or in pinned host memory when it does not fit
            there (each batch is then copied asynchronously).
        on_step : callable, default=None
            Called after every step as ``on_step(step, means)`` with the running means of the loss terms
            (a device tensor ordered as :data:`~imc_cluster.training.progress.LOSS_TERMS`); reading it
            synchronises with the device.
        head_mask : bool Tensor of shape (n_samples,), default=None
            The samples the cluster head learns from, where ``data`` are; its updates then come from the
            :class:`HeadBank`, each over ``min(batch size, masked samples of the epoch)`` samples at least.
            The bank starts empty every epoch (what is left in it at the end, less than one update, is
            dropped, like the samples beyond the last full batch).

        Returns
        -------
        record : dict
            The loss terms, each head's mutual information, the best head (which the network predicts with
            from now on) and its progress measures (:mod:`~imc_cluster.training.progress`); and the epoch,
            learning rate, seconds, updates and images per second.

        Raises
        ------
        DivergenceError
            When a loss is NaN or infinite; the message names the epoch and the step.
        """
        with _cudnn_autotuning(self.generator.device.type == "cuda"):
            return self._train_epoch(data, on_step, head_mask)

    def _train_epoch(self, data: torch.Tensor, on_step, head_mask) -> dict[str, float]:
        self.model.train()
        start = time.perf_counter()
        device = self.generator.device
        totals = EpochTotals(self.model.n_heads, self.model.n_clusters, device)
        first_bad = torch.full((), -1, device=device, dtype=torch.long)
        index_batches = self.epoch_batches(data.shape[0], data.device)
        batch_size = self.batch_size(data.shape[0])  # the global batch
        masks = [None] * len(index_batches)
        if head_mask is not None:
            masks = [gather(head_mask, index, device) for index in index_batches]
            self.bank.clear()
            labelled = int(sum(m.sum() for m in masks))
            if self.world is not None:
                labelled = self.world.total(labelled, device)
            self.bank_target = max(1, min(batch_size, labelled))
        for step, (index, mask) in enumerate(zip(index_batches, masks)):
            terms = totals.add(self.step(gather(data, index, device), mask))
            bad = ~torch.isfinite(terms).all() & (first_bad < 0)
            first_bad = torch.where(bad, torch.full_like(first_bad, step), first_bad)
            if on_step is not None:
                on_step(step, totals.means())
        self.bank.clear()
        if self.world is not None:  # the record of the global batches, and a divergence of any rank
            totals.reduce(self.world)
            first_bad = self.world.maximum(first_bad)
        if int(first_bad) >= 0:
            raise DivergenceError(
                f"The training loss became NaN or infinite at epoch {self.epoch + 1}, "
                f"step {int(first_bad) + 1} of {len(index_batches)}."
            )
        if not bool(torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()):
            raise DivergenceError(
                f"The model's weights became NaN or infinite in epoch {self.epoch + 1} "
                "(the losses stayed finite: the last update diverged)."
            )
        self.epoch += 1
        record = totals.record()
        self.model.select_head(record["best_head"])
        seconds = time.perf_counter() - start
        images = len(index_batches) * batch_size
        record.update(
            epoch=self.epoch,
            lr=self.learning_rate(),
            seconds=seconds,
            updates=self.updates,
            images_per_second=images / seconds,
        )
        return record

    def state(self) -> dict:
        """The training state to resume from (the model's weights are saved by their owner): optimiser,
        counters, settings, random state and the run's seed."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "epoch": self.epoch,
            "config": asdict(self.config),
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
            "seed": self.seed,
        }

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state`'s output (a deep copy of it: training never alters ``state``). A fresh
        state holds only counters, the random state and the seed. Random streams do not transfer between
        device types: from another one, training continues on a stream seeded by the seed and the updates."""
        state = copy.deepcopy(state)
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.epoch, self.seed = int(state["updates"]), int(state["epoch"]), int(state["seed"])
        if state["generator_device"] == self.generator.device.type:
            self.generator.set_state(state["generator"])
        else:
            self.generator.manual_seed(self.seed + self.updates)


@contextlib.contextmanager
def _cudnn_autotuning(enabled: bool):
    """cuDNN autotuning (benchmark mode) while training, for the few fixed view shapes; the setting is
    restored afterwards, and left alone when deterministic algorithms were asked for."""
    previous = torch.backends.cudnn.benchmark
    deterministic = torch.backends.cudnn.deterministic or torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = previous or (enabled and not deterministic)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
