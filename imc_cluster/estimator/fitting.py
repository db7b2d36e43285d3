"""What :meth:`IMCSwAVClustering.fit` does, step by step.

1. Check the parameters, the callbacks and the head mask; encode ``X`` with the input encoder (a new one,
   or on a warm start the fitted one, whose network the parameters must still describe).
2. On a new fit: the normalisation statistics, the fitted architecture, a freshly initialised network and
   the training state of the seed.
3. A :class:`~imc_cluster.training.trainer.Trainer` in that state, and
   :func:`~imc_cluster.training.loop.train_epochs` up to ``max_epochs``; after each epoch the evaluation
   on ``eval_set`` (on BatchNorm statistics re-estimated apart from the training's random stream), the
   ``history_`` record, the checkpoint and the callbacks, until ``max_epochs`` or until a callback raises
   :class:`~imc_cluster.estimator.callbacks.StopTraining`.
4. The BatchNorm statistics of the returned model, evaluation mode, the choice of K among candidate Ks
   (:mod:`~imc_cluster.estimator.candidates`), and ``labels_``.

The fit keeps what it learns in a :class:`Fitted` and never writes the estimator: the estimator takes the
fitted attributes through the ``publish`` function it hands over (after every epoch, before the checkpoint
and the callbacks, and at the end), and puts itself back as it was when the fit fails.

Inside an initialised ``torch.distributed`` process group of several processes (``torchrun``), every rank
runs these steps on the whole data and trains on its slice of each global batch
(:mod:`~imc_cluster.training.distributed`); rank 0 alone writes the checkpoint and runs the callbacks, and
every rank ends with the same model and ``labels_`` over every sample.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from imc_cluster.augmentation.multicrop import check_normalization
from imc_cluster.checkpoints.files import check_writable, load_checkpoint
from imc_cluster.core.devices import resolve_device
from imc_cluster.data import arrays as data_lib
from imc_cluster.data.encoder import InputEncoder
from imc_cluster.data.placement import place
from imc_cluster.estimator import components
from imc_cluster.estimator import params as parameters
from imc_cluster.estimator.callbacks import StopTraining, callback_session, check_callbacks, epoch_callbacks
from imc_cluster.estimator.candidates import candidate_labels, choose_n_clusters
from imc_cluster.estimator.clock import RunClock
from imc_cluster.estimator.components import make_trainer
from imc_cluster.estimator.fitted import Fitted, fit_seed, initial_state
from imc_cluster.estimator.frozen import cached_view_features, evaluation_features
from imc_cluster.estimator.params import frozen_encoder, is_candidates
from imc_cluster.metrics import evaluate_clustering
from imc_cluster.model.build import load_pretrained
from imc_cluster.model.pretrained import parse_backbone
from imc_cluster.training.distributed import World, current_world, device_for, is_main
from imc_cluster.training.loop import train_epochs
from imc_cluster.training.progress import LOSS_TERMS, PROGRESS_MEASURES
from imc_cluster.training.trainer import DivergenceError, Trainer

__all__ = ["fit"]


def fit(est, X, eval_set, callbacks, head_mask, publish: Callable[[Fitted], None]) -> None:
    """Fit on ``X`` with the parameters of ``est`` (see :meth:`IMCSwAVClustering.fit`), handing what is
    fitted to ``publish`` after every epoch and at the end. Gradients are on whatever the caller's mode
    (``torch.no_grad()``, ``torch.inference_mode()``), and the caller's global random state is untouched."""
    with torch.inference_mode(False), torch.enable_grad():
        _fit(est, X, eval_set, callbacks, head_mask, publish)


def _fit(est, X, eval_set, callbacks, head_mask, publish: Callable[[Fitted], None]) -> None:
    params = parameters.checked_params(est)
    callbacks = check_callbacks(callbacks)
    world = current_world()
    main = is_main(world)
    device = resolve_device(device_for(world, params["device"]))
    resume = bool(params["warm_start"]) and hasattr(est, "model_")
    seed = None if resume else fit_seed(params, world)
    pretrained = None
    if not resume and parse_backbone(params["backbone"]) is not None:
        pretrained = load_pretrained(params["backbone"], params["weights"], seed)
    inputs = (
        est.inputs_
        if resume
        else InputEncoder(
            params["image_shape"],
            params["backbone"],
            params["normalization"],
            None if pretrained is None else pretrained.preprocessing,
        )
    )
    data = inputs.encode(X, est) if resume else inputs.fit_encode(X, est)
    if resume:
        _check_architecture(params, est.architecture_, inputs, getattr(est, "k_scores_", None))
    n_samples = data.values.shape[0]
    largest = max(params["n_clusters"]) if is_candidates(params["n_clusters"]) else params["n_clusters"]
    if n_samples < max(2, largest):
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={params['n_clusters']} (and >= 2).")
    crops = components.crop_sizes(params, inputs) if data.is_image else None
    evaluation = _eval_set(est, inputs, eval_set)
    mask = _head_mask(head_mask, n_samples)
    if params["checkpoint_path"] is not None and main:
        check_writable(params["checkpoint_path"])
    if world is not None and device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    parameters.warn_about_run(params, n_samples, crops, 1 if world is None else world.size)
    if resume:
        fitted = Fitted.of(est)
        fitted.device = device
    else:
        fitted = initial_state(params, inputs, data, device, seed, pretrained)
    frozen = frozen_encoder(params)
    trainer = make_trainer(
        params, fitted.inputs, fitted.model, fitted.device, fitted.training_state, world, frozen
    )
    publish(fitted)
    values = place(data.values, device)
    if frozen:
        values = cached_view_features(params, fitted, values)
        if evaluation is not None:
            evaluation = (evaluation_features(params, fitted, evaluation[0]), evaluation[1])
        fitted.on_features = True
    with (
        _checkpoint_lock(params["checkpoint_path"] if main else None),
        callback_session(est, callbacks if main else []),
    ):
        mask = None if mask is None else mask.to(values.device)
        _train(est, params, fitted, trainer, values, mask, evaluation, callbacks, publish)


def _check_architecture(
    params: dict, architecture: dict, inputs: InputEncoder, k_scores: dict | None = None
) -> None:
    """A warm start continues the fitted network: the parameters must still describe it (the candidate Ks
    among which it chose, ``k_scores``'s, describe the chosen K's network)."""
    wanted = components.architecture(params, inputs)
    if "pretrained" in architecture:  # a warm start continues the weights it has, whichever it started from
        wanted["pretrained"]["weights"] = architecture["pretrained"]["weights"]
    if k_scores is not None and wanted["n_clusters"] == sorted(k_scores):
        wanted["n_clusters"] = architecture["n_clusters"]
    changed = [
        f"{key}: {architecture[key]!r} -> {value!r}"
        for key, value in wanted.items()
        if value != architecture[key]
    ]
    if inputs.is_image and params["normalization"] is not None:
        mean, std = check_normalization(params["normalization"])
        if (mean, std) != (inputs.pixel_mean, inputs.pixel_std):
            fitted = (inputs.pixel_mean, inputs.pixel_std)
            changed.append(f"normalization: {fitted!r} -> {(mean, std)!r}")
    if changed:
        raise ValueError(
            f"warm_start continues the fitted network, but the parameters change its architecture or input "
            f"({'; '.join(changed)}); set them back, or fit without warm_start."
        )


def _evaluate(params: dict, fitted: Fitted, evaluation) -> dict:
    """ACC, NMI and ARI on the evaluation set (each a list, one per candidate K, of its chosen head, while
    the network has candidates)."""
    values, labels = evaluation
    if fitted.model.candidates is None:
        return evaluate_clustering(labels, fitted.logits(params, values).argmax(dim=1).numpy())
    model = fitted.model
    heads = candidate_labels(fitted.logits(params, values, "head_clusters"), model.candidates, model.n_heads)
    scores = [evaluate_clustering(labels, group[best]) for group, best in zip(heads, model.best_heads)]
    return {key: [score[key] for score in scores] for key in scores[0]}


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


def _eval_set(est, inputs: InputEncoder, eval_set) -> tuple[torch.Tensor, np.ndarray] | None:
    if eval_set is None:
        return None
    if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
        raise ValueError("eval_set must be a pair (X_val, y_val).")
    values = inputs.encode(eval_set[0], est).values
    return values, data_lib.true_labels(eval_set[1], values.shape[0], "eval_set labels")


def _train(
    est,
    params: dict,
    fitted: Fitted,
    trainer: Trainer,
    values: torch.Tensor,
    mask,
    evaluation,
    callbacks: list,
    publish: Callable[[Fitted], None],
) -> None:
    """The epochs up to ``max_epochs``, each ending in :func:`_end_epoch`, then :func:`_finish`."""
    steps = trainer.steps_per_epoch(values.shape[0])
    remaining, first = max(0, params["max_epochs"] - trainer.epoch), fitted.n_iter
    world, path = trainer.world, params["checkpoint_path"]
    # a distributed rollback keeps the last good epoch in memory: rank 0's checkpoint may be on another node
    saved = (lambda: _saved_epoch(path, fitted.on_features)) if path is not None and world is None else None
    shows = bool(params["verbose"]) and is_main(world)
    clock = RunClock(params["max_time"], remaining, steps, str(fitted.device))
    with tqdm(total=remaining * steps, disable=not shows, desc="IMC-SwAV", unit="step") as bar:

        def end_epoch(record: dict) -> None:
            record["eta_seconds"] = clock.time_left(trainer.epoch - first)
            _end_epoch(est, params, fitted, trainer, values, record, evaluation, publish)
            bar.set_postfix(_postfix(record))

        try:
            train_epochs(
                trainer,
                values,
                remaining,
                end_epoch,
                head_mask=mask,
                saved=saved,
                on_step=_progress(bar, steps, clock, shows),
                callbacks=[epoch_callbacks(est, [*callbacks, clock.check_budget], world)],
            )
        except StopTraining as stop:  # after a complete epoch: the model is finished as after the last one
            if params["verbose"]:
                bar.write(f"IMC-SwAV: stopped after epoch {fitted.n_iter}. {stop}".rstrip())
        except DivergenceError:
            if fitted.n_iter > first:  # rolled back to the last good epoch: finish that model
                fitted.n_iter, fitted.training_state = trainer.epoch, trainer.state()
                _finish(params, fitted, values, world)
                publish(fitted)
            raise
    # the last epoch's evaluation already re-estimated the BatchNorm statistics of the returned model
    _finish(params, fitted, values, world, recalibrate=evaluation is None or remaining == 0)
    publish(fitted)
    if path is not None and is_main(world):
        est.save(path)


def _saved_epoch(path, on_features: bool) -> tuple[dict, dict]:
    """The weights and training state of the checkpoint just written (a rollback reads them back rather
    than keeping a copy in memory); ``on_features``: without the frozen encoder's, which do not train."""
    content = load_checkpoint(path)
    weights = content["model"]
    if on_features:
        weights = {name: value for name, value in weights.items() if not name.startswith("encoder.")}
    return weights, content["training"]


def _end_epoch(
    est,
    params: dict,
    fitted: Fitted,
    trainer: Trainer,
    values: torch.Tensor,
    record: dict,
    evaluation,
    publish: Callable[[Fitted], None],
) -> None:
    """Evaluate, record the epoch and the training state, publish them, and write the checkpoint."""
    if evaluation is not None:
        fitted.recalibrate(params, values, trainer.world)
        record.update(_evaluate(params, fitted, evaluation))
    fitted.history = [*fitted.history, record]  # a new list: a failed warm start puts the old one back
    fitted.n_iter, fitted.training_state = trainer.epoch, trainer.state()
    publish(fitted)
    if params["checkpoint_path"] is not None and is_main(trainer.world):
        est.save(params["checkpoint_path"])


def _finish(
    params: dict, fitted: Fitted, values: torch.Tensor, world: World | None, recalibrate: bool = True
) -> None:
    """Evaluation-ready BatchNorm statistics, the model in evaluation mode, the chosen K of candidate Ks
    (:mod:`~imc_cluster.estimator.candidates`), and the training labels (over the whole data on every rank of
    a distributed fit)."""
    if recalibrate:
        fitted.recalibrate(params, values, world)
    fitted.model.eval()
    if fitted.model.candidates is not None:
        choose_n_clusters(params, fitted, values, world)
    fitted.labels = fitted.logits(params, values).argmax(dim=1).numpy().astype(np.int64)


@contextlib.contextmanager
def _checkpoint_lock(path):
    """Hold ``path + ".lock"`` for the whole fit, so that two processes never write the same checkpoint (a
    second one fails at once); the lock file is removed when the fit ends."""
    if path is None:
        yield
        return
    lock = FileLock(os.fspath(path) + ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(
            f"Another process is training into {path} (its lock {lock.lock_file} is held); choose "
            "another checkpoint path."
        ) from None
    try:
        yield
    finally:
        # removed while still held: a fit that starts now makes a new lock file, and this one writes no more
        Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def _postfix(record: dict) -> dict[str, str]:
    shown = ("epoch", *LOSS_TERMS, *PROGRESS_MEASURES, "acc", "eta_seconds")
    return {key: _shown(value) for key, value in record.items() if key in shown}


def _shown(value) -> str:
    """A record value on the progress bar: a list (one per candidate K) as its values joined by "/"."""
    if isinstance(value, list):
        return "/".join(map(_shown, value))
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _progress(bar: tqdm, steps: int, clock: RunClock, shows: bool):
    """Per-step progress: the run's estimate after its first steps, and with ``shows`` the bar, with the
    running losses about 10 times an epoch (each read waits for the device)."""
    every = max(1, steps // 10)

    def on_step(step: int, means: torch.Tensor) -> None:
        clock.on_step()
        if shows:
            bar.update()
            if (step + 1) % every == 0:
                bar.set_postfix(_postfix(dict(zip(LOSS_TERMS, means.tolist()))))

    return on_step
