"""What :meth:`IMCSwAVClustering.fit` does, step by step, on the estimator it is given.

1. Check the parameters, the callbacks and the head mask; encode ``X`` with the input encoder (a new one,
   or on a warm start the fitted one, whose network the parameters must still describe).
2. On a new fit: the normalisation statistics, the fitted architecture, a freshly initialised network and
   the training state of the seed.
3. A :class:`~imc_cluster.training.Trainer` in that state, and :func:`~imc_cluster.training.train_epochs`
   up to ``max_epochs``; after each epoch the evaluation on ``eval_set`` (on BatchNorm statistics
   re-estimated apart from the training's random stream), the ``history_`` record, the checkpoint and the
   callbacks, until ``max_epochs`` or until a callback raises :class:`~imc_cluster.callbacks.StopTraining`.
4. The BatchNorm statistics of the returned model, evaluation mode, and ``labels_``.

Inside an initialised ``torch.distributed`` process group of several processes (``torchrun``), every rank
runs these steps on the whole data and trains on its slice of each global batch
(:mod:`~imc_cluster.distributed`); rank 0 alone writes the checkpoint and runs the callbacks, and every
rank ends with the same model and ``labels_`` over every sample.
"""

from __future__ import annotations

import contextlib
import copy
import os

import numpy as np
import torch
from filelock import FileLock, Timeout
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from . import config, inference, persistence
from . import data as data_lib
from .distributed import World, current_world, device_for, is_main
from .inputs import InputEncoder, check_normalization
from .metrics import evaluate_clustering
from .networks import ResNetEncoder
from .batchnorm import recalibrate_batch_norm
from .callbacks import StopTraining
from .training import LOSS_TERMS, DivergenceError, Trainer, train_epochs

__all__ = ["fit_or_restore", "fit", "check_params", "logits", "run", "true_labels"]


def check_params(est) -> None:
    """Every parameter's type, range and structure, before any work starts."""
    est._validate_params()
    config.check_params(est.get_params())


def fit_or_restore(est, X, eval_set, callbacks, head_mask) -> None:
    """:func:`fit`, or on failure ``est`` put back as it was (after a divergence: as after its last complete
    epoch, when one completed)."""
    previous = dict(est.__dict__)
    # a warm start trains model_ in place: keep its weights to put back if the fit fails
    weights = copy.deepcopy(est.model_.state_dict()) if est.warm_start and hasattr(est, "model_") else None
    try:
        fit(est, X, eval_set, callbacks, head_mask)
    except BaseException as error:
        if not isinstance(error, DivergenceError) or getattr(est, "n_iter_", 0) <= previous.get("n_iter_", 0):
            est.__dict__.clear()
            est.__dict__.update(previous)
            if weights is not None:
                est.model_.load_state_dict(weights)
                est.model_.to(est.device_).eval()
        raise


def fit(est, X, eval_set, callbacks, head_mask) -> None:
    """Fit ``est`` on ``X`` (see :meth:`IMCSwAVClustering.fit`); :func:`fit_or_restore` restores it on
    failure."""
    check_params(est)
    callbacks = _check_callbacks(callbacks)
    resume = bool(est.warm_start) and hasattr(est, "model_")
    if not resume:
        est.inputs_ = InputEncoder(est.image_shape, est.backbone, est.normalization)
        est.__dict__.pop("feature_names_in_", None)  # of an earlier fit: only a named 2-D X sets them
    data = est.inputs_.encode(X, est) if resume else est.inputs_.fit_encode(X, est)
    if resume:
        _check_architecture(est)
    n_samples = data.values.shape[0]
    if n_samples < max(2, est.n_clusters):
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={est.n_clusters} (and >= 2).")
    if data.is_image:
        config.crop_sizes(est.get_params(), *est.inputs_.sample_shape[1:])
    evaluation = _eval_set(est, eval_set)
    mask = _head_mask(head_mask, n_samples)
    world = current_world()
    main = is_main(world)
    if est.checkpoint_path is not None and main:
        persistence.check_writable(est.checkpoint_path)
    est.device_ = config.resolve_device(device_for(world, est.device))
    if world is not None and est.device_.type == "cuda":
        torch.cuda.set_device(est.device_)  # NCCL's object collectives use the current device
    config.warn_about_run(est.get_params(), n_samples)
    if not resume:
        _initialize(est, data, world)
    trainer = _trainer(est, world)
    values = data_lib.place(data.values, est.device_)
    with _checkpoint_lock(est.checkpoint_path if main else None), \
            _callback_session(est, callbacks if main else []):
        _train(est, trainer, values, None if mask is None else mask.to(values.device), evaluation, callbacks)


def _check_callbacks(callbacks) -> list:
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


def _check_architecture(est) -> None:
    """A warm start continues the fitted network: the parameters must still describe it."""
    wanted = config.architecture(est.get_params(), est.inputs_)
    changed = [
        f"{key}: {est.architecture_[key]!r} -> {value!r}"
        for key, value in wanted.items()
        if value != est.architecture_[key]
    ]
    if est.inputs_.is_image and est.normalization is not None:
        mean, std = check_normalization(est.normalization)
        if (mean, std) != (est.inputs_.pixel_mean, est.inputs_.pixel_std):
            fitted = (est.inputs_.pixel_mean, est.inputs_.pixel_std)
            changed.append(f"normalization: {fitted!r} -> {(mean, std)!r}")
    if changed:
        raise ValueError(
            f"warm_start continues the fitted network, but the parameters change its architecture or input "
            f"({'; '.join(changed)}); set them back, or fit without warm_start."
        )


def _head_mask(head_mask, n_samples: int) -> torch.Tensor | None:
    """The validated ``head_mask`` as a bool tensor, or None."""
    if head_mask is None:
        return None
    mask = np.asarray(data_lib.as_array_like(head_mask))
    if mask.dtype != bool or mask.shape != (n_samples,):
        raise ValueError(
            f"head_mask must be a boolean array with one entry per sample ({n_samples}), got "
            f"dtype {mask.dtype} and shape {mask.shape}."
        )
    if not mask.any():
        raise ValueError("head_mask selects no sample: the cluster head needs at least one.")
    return torch.from_numpy(mask.copy())


def true_labels(y, n_samples: int, what: str) -> np.ndarray:
    """True labels for scoring: 1-D, one per sample, none missing."""
    y = np.asarray(data_lib.as_array_like(y))
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"{what} must be 1-D with one label per sample: got {y.shape} labels for {n_samples} samples."
        )
    if (y.dtype.kind == "f" and np.isnan(y).any()) or (y.dtype == object and any(v is None for v in y)):
        raise ValueError(f"{what} hold missing (NaN or None) labels; leave those samples out.")
    return y


def _eval_set(est, eval_set) -> tuple[torch.Tensor, np.ndarray] | None:
    if eval_set is None:
        return None
    if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
        raise ValueError("eval_set must be a pair (X_val, y_val).")
    values = est.inputs_.encode(eval_set[0], est).values
    return values, true_labels(eval_set[1], values.shape[0], "eval_set labels")


def _initialize(est, data: data_lib.PreparedData, world: World | None) -> None:
    """Fresh statistics, network and training state for a new fit (of rank 0's seed on every rank)."""
    if data.is_image:
        est.inputs_.fit_statistics(data.values)
        est.n_features_in_ = int(np.prod(data.sample_shape))
    seed = int(check_random_state(est.random_state).randint(np.iinfo(np.int32).max))
    if world is not None:
        seed = world.broadcast(seed)
    est.architecture_ = config.architecture(est.get_params(), est.inputs_)
    est.model_ = config.build_network(est.architecture_, seed)
    generator = torch.Generator(est.device_).manual_seed(seed)
    est.training_state_ = {
        "updates": 0,
        "epoch": 0,
        "generator": generator.get_state(),
        "generator_device": est.device_.type,
        "seed": seed,
    }
    est.history_, est.n_iter_ = [], 0


def _training_dtype(est) -> torch.dtype | None:
    """The autocast dtype of training (None for float32), as ``precision`` asks."""
    if est.precision == "float32":
        return None
    return torch.bfloat16 if est.precision == "bfloat16" or est.device_.type == "cuda" else None


def _trainer(est, world: World | None) -> Trainer:
    """A trainer for ``model_`` on the training device, in the state ``training_state_`` records."""
    params, cuda = est.get_params(), est.device_.type == "cuda"
    est.model_.to(est.device_)
    if cuda and est.inputs_.is_image:
        est.model_.to(memory_format=torch.channels_last)
    if isinstance(est.model_.encoder, ResNetEncoder):
        est.model_.encoder.checkpointing = est.activation_checkpointing
    trainer = Trainer(
        est.model_,
        config.augmenter(params, est.inputs_),
        config.training_config(params),
        torch.Generator(est.device_),
        autocast_dtype=_training_dtype(est),
        world=world,
        channels_last=cuda and est.inputs_.is_image,
        compile=est.compile,
    )
    trainer.load_state(est.training_state_)
    return trainer


def _train(est, trainer: Trainer, values: torch.Tensor, mask, evaluation, callbacks) -> None:
    """The epochs up to ``max_epochs``, each ending in :func:`_end_epoch`, then :func:`_finish`."""
    steps = trainer.steps_per_epoch(values.shape[0])
    remaining, first = max(0, est.max_epochs - trainer.epoch), est.n_iter_
    world = trainer.world
    # a distributed rollback keeps the last good epoch in memory: rank 0's checkpoint may be on another node
    saved = None
    if est.checkpoint_path is not None and world is None:
        saved = lambda: _saved_epoch(est.checkpoint_path)  # noqa: E731
    shows = bool(est.verbose) and is_main(world)
    with tqdm(total=remaining * steps, disable=not shows, desc="IMC-SwAV", unit="step") as bar:

        def end_epoch(record: dict) -> None:
            _end_epoch(est, trainer, values, record, evaluation)
            bar.set_postfix(_postfix(record))

        try:
            train_epochs(
                trainer,
                values,
                remaining,
                end_epoch,
                head_mask=mask,
                saved=saved,
                on_step=_progress(bar, steps) if shows else None,
                callbacks=[_epoch_callbacks(est, callbacks, world)],
            )
        except StopTraining as stop:  # after a complete epoch: the model is finished as after the last one
            if est.verbose:
                bar.write(f"IMC-SwAV: stopped after epoch {est.n_iter_}. {stop}".rstrip())
        except DivergenceError:
            if est.n_iter_ > first:  # rolled back to the last good epoch: finish that model
                est.n_iter_, est.training_state_ = trainer.epoch, trainer.state()
                _finish(est, values, world)
            raise
    # the last epoch's evaluation already re-estimated the BatchNorm statistics of the returned model
    _finish(est, values, world, recalibrate=evaluation is None or remaining == 0)
    if est.checkpoint_path is not None and is_main(world):
        est.save(est.checkpoint_path)


def _epoch_callbacks(est, callbacks: list, world: World | None):
    """Every callback on the epoch's record, ``callback(est, record)``, then the first stop one asked for. In
    a distributed fit the callbacks run on rank 0, whose stop request every rank then follows."""

    def run_all(record: dict) -> None:
        stop = None
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
def _callback_session(est, callbacks: list):
    """The callbacks' optional ``on_fit_begin(est)`` before the epochs, and ``on_fit_end(est)`` after them
    (also when the fit fails)."""
    for callback in callbacks:
        getattr(callback, "on_fit_begin", _nothing)(est)
    try:
        yield
    finally:
        for callback in callbacks:
            getattr(callback, "on_fit_end", _nothing)(est)


def _nothing(est) -> None:
    """The hook of a callback that has none."""


def _saved_epoch(path) -> tuple[dict, dict]:
    """The weights and training state of the checkpoint just written (a rollback reads them back rather
    than keeping a copy in memory)."""
    content = persistence.load_checkpoint(path)
    return content["model"], content["training"]


def _end_epoch(est, trainer: Trainer, values: torch.Tensor, record: dict, evaluation) -> None:
    """Evaluate, record the epoch and the training state, and write the checkpoint."""
    if evaluation is not None:
        _recalibrate(est, values, trainer.world)
        record.update(evaluate_clustering(evaluation[1], logits(est, evaluation[0]).argmax(dim=1).numpy()))
    est.history_ = [*est.history_, record]  # a new list: a failed warm start puts the old one back
    est.n_iter_, est.training_state_ = trainer.epoch, trainer.state()
    if est.checkpoint_path is not None and is_main(trainer.world):
        est.save(est.checkpoint_path)


def _finish(est, values: torch.Tensor, world: World | None, recalibrate: bool = True) -> None:
    """Evaluation-ready BatchNorm statistics, the model in evaluation mode, and the training labels (over
    the whole data on every rank of a distributed fit)."""
    if recalibrate:
        _recalibrate(est, values, world)
    est.model_.eval()
    est.labels_ = logits(est, values).argmax(dim=1).numpy().astype(np.int64)


def _recalibrate(est, values: torch.Tensor, world: World | None) -> None:
    """Re-estimate the BatchNorm statistics; every rank of a distributed fit re-estimates them alike and then
    takes rank 0's (a GPU's reductions need not be bit-reproducible)."""
    recalibrate_batch_norm(
        est.model_,
        values,
        est.inputs_.network_input,
        batch_size=est.batch_size,
        n_batches=est.bn_recalibration_batches,
        seed=est.training_state_["seed"],
        device=est.device_,
    )
    if world is not None:
        world.broadcast_buffers(est.model_)


def run(est, network, values: torch.Tensor) -> torch.Tensor:
    """``network`` (a part of ``est.model_``) on encoded ``values``, in evaluation mode, under bf16 autocast
    on CUDA unless ``precision="float32"``."""
    return inference.run(
        est.model_,
        network,
        values,
        est.inputs_.network_input,
        device=est.device_,
        batch_size=est.batch_size,
        bfloat16=est.device_.type == "cuda" and est.precision != "float32",
    )


def logits(est, values: torch.Tensor) -> torch.Tensor:
    """Cluster logits of encoded ``values``."""
    return run(est, est.model_.cluster_logits, values)


def _checkpoint_lock(path):
    """Hold ``path + ".lock"`` for the whole fit, so that two processes never write the same checkpoint; a
    second one fails at once."""
    if path is None:
        return contextlib.nullcontext()
    lock = FileLock(os.fspath(path) + ".lock", timeout=0)
    try:
        return lock.acquire()  # a context manager that releases the lock on exit
    except Timeout:
        raise ValueError(
            f"Another process is training into {path} (its lock {lock.lock_file} is held); choose "
            "another checkpoint path."
        ) from None


def _postfix(record: dict) -> dict[str, str]:
    shown = ("epoch", *LOSS_TERMS, "acc")
    return {
        key: f"{value:.3f}" if isinstance(value, float) else str(value)
        for key, value in record.items()
        if key in shown
    }


def _progress(bar: tqdm, steps: int):
    """Per-step progress: advance the bar, and show the running losses about 10 times an epoch (each read
    waits for the device)."""
    every = max(1, steps // 10)

    def on_step(step: int, means: torch.Tensor) -> None:
        bar.update()
        if (step + 1) % every == 0:
            bar.set_postfix(_postfix(dict(zip(LOSS_TERMS, means.tolist()))))

    return on_step
