"""The epoch loop: epochs of a trainer, each followed by its record's consumers, and the rollback of a
diverged epoch to the last completed one."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from imc_cluster.training.trainer import DivergenceError, Trainer

__all__ = ["train_epochs"]


def train_epochs(
    trainer: Trainer,
    data: torch.Tensor,
    epochs: int,
    end_epoch: Callable[[dict], None],
    *,
    head_mask: torch.Tensor | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    saved: Callable[[], tuple[dict, dict]] | None = None,
    callbacks: Sequence[Callable[[dict], None]] = (),
) -> None:
    """Train ``epochs`` more epochs, with ``end_epoch(record)`` (evaluation, history, checkpoint) and then
    the ``callbacks`` after each, and roll back a diverged epoch.

    Parameters
    ----------
    trainer : Trainer
        The trainer; :meth:`Trainer.train_epoch` runs each epoch.
    data, head_mask, on_step
        As in :meth:`Trainer.train_epoch`.
    epochs : int
        Epochs to run.
    end_epoch : callable
        Called with every completed epoch's record; the state it leaves is the one a rollback returns to.
    saved : callable, default=None
        Returns the ``(weights, trainer state)`` of the last completed epoch when a rollback needs them,
        e.g. read back from the checkpoint ``end_epoch`` writes; without it every completed epoch keeps a
        copy in memory.
    callbacks : sequence of callable, default=()
        Called with every completed epoch's record after its state was kept (what they change in the model
        is not rolled back to).

    Raises
    ------
    DivergenceError
        From a diverged epoch, after the model, the optimiser and the random state were put back as they
        were after the last completed epoch of this call (before the first, the caller's state stands).
    """
    last_good = None
    for _ in range(epochs):
        try:
            record = trainer.train_epoch(data, on_step, head_mask)
        except DivergenceError:
            if last_good is not None:
                weights, state = last_good()
                trainer.model.load_state_dict(weights)
                trainer.load_state(state)
            raise
        end_epoch(record)
        last_good = saved or _kept_in_memory(trainer)
        for callback in callbacks:
            callback(record)


def _kept_in_memory(trainer: Trainer) -> Callable[[], tuple[dict, dict]]:
    weights, state = copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.state())
    return lambda: (weights, state)
