"""Callbacks for :meth:`~imc_cluster.IMCSwAVClustering.fit`: early stopping and TensorBoard logging.

A callback is any callable ``callback(estimator, record)``; ``fit`` calls it after every epoch with that
epoch's ``history_`` record. One that raises :class:`StopTraining` ends the fit after that epoch (the other
callbacks still see the epoch). A callback may also have methods ``on_fit_begin(estimator)`` and
``on_fit_end(estimator)``, which ``fit`` calls before the first epoch of every fit and after its last one
(also when the fit fails).

What a callback may do. The estimator it receives holds the fitted attributes of the epoch just completed
(``model_``, ``history_``, ``n_iter_``, ``training_state_``, ...), and its network is in evaluation mode
while callbacks run. A callback may

* read any attribute, and ``predict``, ``predict_proba``, ``transform`` or ``score`` any data, such as a
  validation set: inference touches neither the weights, the BatchNorm statistics nor the random streams
  of the training, so the fit goes on exactly as it would without the callback;
* write the estimator with ``save(path)``;
* add entries to the record (numbers, bools, strings, None or lists of them), which stay in ``history_``
  and in checkpoints (any other value is kept there as its ``repr``);
* raise :class:`StopTraining`.

It must not change the estimator: calling ``fit`` from a callback is refused (a RuntimeError), and changes
to its parameters or weights are not rolled back or checked.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from imc_cluster.core.numbers import check_integer, check_real, is_real
from imc_cluster.training.distributed import World, is_main

__all__ = [
    "StopTraining",
    "EarlyStopping",
    "TensorBoard",
    "check_callbacks",
    "epoch_callbacks",
    "callback_session",
]

#: the end of the names of the event files that :class:`TensorBoard` writes (and deletes)
EVENT_FILE_SUFFIX = ".imc-cluster"


class StopTraining(Exception):
    """Raised by a fit callback to end the fit after the current epoch.

    The model is then finished as after the last epoch of ``max_epochs``: BatchNorm statistics re-estimated,
    ``labels_`` computed and the checkpoint written, with ``n_iter_`` the epochs run. A warm start continues
    from there up to ``max_epochs``.
    """


class EarlyStopping:
    """Stop the fit when a value of the epoch records has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default="loss"
        Key of the ``history_`` records to watch: a loss term ("loss", "swav", "mi", "reg") or, with
        ``eval_set``, "acc", "nmi" or "ari".
    patience : int, default=10
        Consecutive epochs without improvement after which the fit stops.
    min_delta : float, default=0.0
        How much better than the best value so far a value must be to count as an improvement.
    mode : {"min", "max"}, default="min"
        Whether lower ("min", for losses) or higher ("max", for scores) values are better.

    Attributes
    ----------
    best_ : float or None
        Best value of the current (or last) fit.
    best_epoch_ : int or None
        Epoch of ``best_``.
    stopped_epoch_ : int or None
        Epoch after which the fit stopped; None when it was not stopped.

    Examples
    --------
    >>> from imc_cluster.estimator.callbacks import EarlyStopping
    >>> stop = EarlyStopping(monitor="acc", mode="max", patience=20)
    >>> est.fit(X, eval_set=(X_val, y_val), callbacks=[stop])  # doctest: +SKIP
    """

    def __init__(
        self, monitor: str = "loss", patience: int = 10, min_delta: float = 0.0, mode: str = "min"
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a history_ record key, got {monitor!r}.")
        check_integer("patience", patience)
        check_real("min_delta", min_delta)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.on_fit_begin(None)

    def on_fit_begin(self, estimator) -> None:
        """Forget the previous fit: every fit (a warm start too) gets its own ``patience``."""
        self.best_, self.best_epoch_, self.stopped_epoch_, self._waited = None, None, None, 0

    def __call__(self, estimator, record: dict) -> None:
        """Take the epoch's ``record`` into account; raise :class:`StopTraining` when patience runs out."""
        if self.monitor not in record:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which the epoch records do not have; they have "
                f"{', '.join(map(repr, record))} (acc, nmi and ari need an eval_set)."
            )
        if isinstance(record[self.monitor], list):
            raise TypeError(
                f"EarlyStopping monitors {self.monitor!r}, which is a list in these records (one value per "
                "head or per candidate K of n_clusters); monitor a number such as 'loss'."
            )
        value = float(record[self.monitor])
        if self.best_ is None or self._improves(value):
            self.best_, self.best_epoch_, self._waited = value, record["epoch"], 0
            return
        self._waited += 1
        if self._waited >= self.patience:
            self.stopped_epoch_ = record["epoch"]
            raise StopTraining(
                f"{self.monitor} has not improved on {self.best_:.6g} (epoch {self.best_epoch_}) by more "
                f"than {self.min_delta:g} for {self.patience} epochs."
            )

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best_ - self.min_delta
        return value > self.best_ + self.min_delta


class TensorBoard:
    """Write every numeric value of each epoch's record to TensorBoard, as a scalar at the epoch (a list of
    numbers, such as every head's loss ``mi_heads``, as ``mi_heads/0``, ``mi_heads/1``, ...).

    The scalars are named as the record's keys ("loss", "swav", "mi", "reg", "best_head", "confidence",
    "agreement", "clusters_used", "lr", "seconds", "updates", "images_per_second", and "acc", "nmi", "ari"
    with ``eval_set``); the step is the epoch.

    Parameters
    ----------
    log_dir : str or path-like
        Folder of the event files (created when needed); ``tensorboard --logdir`` shows it.
    purge : bool, default=True
        Keep one run's curves in ``log_dir``: a new fit deletes the event files that this callback wrote
        there before (those named ``*.imc-cluster``; other files are left alone), and a warm start from
        epoch ``e`` hides what older files hold from step ``e + 1`` on (e.g. the epochs that an interrupted
        fit logged after its last checkpoint). False only adds files.

    Raises
    ------
    ImportError
        When the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike, purge: bool = True) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "The TensorBoard callback needs the tensorboard package: "
                "pip install 'imc-cluster[tensorboard]'."
            ) from error
        self._writer_class = SummaryWriter
        if not isinstance(purge, (bool, np.bool_)):
            raise TypeError(f"purge must be True or False, got {purge!r}.")
        self.log_dir, self.purge = _check_log_dir(log_dir), bool(purge)
        self._writer = None

    def __call__(self, estimator, record: dict) -> None:
        """Write the record's numeric values at step ``record["epoch"]``."""
        epoch = record["epoch"]
        if self._writer is None:
            self._writer = self._open(epoch)
        for key, value in record.items():
            if key != "epoch" and is_real(value):
                self._writer.add_scalar(key, float(value), epoch)
            elif isinstance(value, (list, tuple)) and all(map(is_real, value)):  # one per head: "mi_heads/2"
                for index, item in enumerate(value):
                    self._writer.add_scalar(f"{key}/{index}", float(item), epoch)
        self._writer.flush()

    def on_fit_begin(self, estimator) -> None:
        """Close what an earlier fit left open: each fit writes its own event file."""
        self.on_fit_end(estimator)

    def on_fit_end(self, estimator) -> None:
        """Close the fit's event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, epoch: int):
        """A writer for a fit whose first epoch is ``epoch``."""
        if self.purge and epoch == 1:
            for old in Path(self.log_dir).glob(f"events.out.tfevents.*{EVENT_FILE_SUFFIX}"):
                old.unlink()
        purge_step = epoch if self.purge and epoch > 1 else None
        return self._writer_class(self.log_dir, purge_step=purge_step, filename_suffix=EVENT_FILE_SUFFIX)


def _check_log_dir(log_dir) -> str:
    """``log_dir`` as a string, or a ValueError now (not at the first epoch) when it cannot be a folder of
    event files: a file, under a file, or in a folder that cannot be written."""
    if not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(f"log_dir must be a path, got {type(log_dir).__name__}.")
    path = Path(log_dir).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under the file {existing}"
        raise ValueError(f"TensorBoard log_dir {path} {where}: give a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"TensorBoard log_dir {path} cannot be written: {existing} is not writable.")
    return os.fspath(path)


# ------------------------------------------------------------------------------------ how fit runs them


def check_callbacks(callbacks) -> list:
    """``fit``'s ``callbacks``: a sequence (or None) of callables ``callback(estimator, record)``."""
    if callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise TypeError(
            f"callbacks must be a sequence of callables callback(estimator, record), got {callbacks!r}; "
            "wrap a single one in a list."
        )
    callbacks = list(callbacks or ())
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"callbacks must be callables callback(estimator, record), got {callback!r}.")
    return callbacks


def epoch_callbacks(est, callbacks: list, world: World | None):
    """Every callback on the epoch's record, ``callback(est, record)``, then the first stop one asked for. In
    a distributed fit the callbacks run on rank 0, whose stop request every rank then follows."""

    def run_all(record: dict) -> None:
        stop = None
        with _evaluation_mode(est):
            for callback in callbacks if is_main(world) else ():
                try:
                    callback(est, record)
                except StopTraining as request:
                    stop = stop or request
        if world is not None:
            stop = world.broadcast(stop)
        if stop is not None:
            raise stop

    return run_all


@contextlib.contextmanager
def callback_session(est, callbacks: list):
    """The callbacks' optional ``on_fit_begin(est)`` before the epochs, and ``on_fit_end(est)`` after them
    (also when the fit fails)."""
    with _evaluation_mode(est):
        for callback in callbacks:
            getattr(callback, "on_fit_begin", _nothing)(est)
    try:
        yield
    finally:
        with _evaluation_mode(est):
            for callback in callbacks:
                getattr(callback, "on_fit_end", _nothing)(est)


@contextlib.contextmanager
def _evaluation_mode(est):
    """The estimator's network in evaluation mode for the callbacks (so that they can predict), then back in
    the mode the training left it in."""
    model = getattr(est, "model_", None)
    training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        yield
    finally:
        if model is not None:
            model.train(training)


def _nothing(est) -> None:
    """The hook of a callback that has none."""
