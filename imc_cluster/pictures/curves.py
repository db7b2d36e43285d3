"""The training curves: the loss terms, learning rate and scores of ``history_`` (or of the command line's
``history.jsonl``), one panel each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from imc_cluster.core.numbers import is_real
from imc_cluster.pictures.common import pyplot

__all__ = ["plot_training_curves"]

#: panels of the training curves: title and the history keys drawn on it, in this order
PANELS = (
    ("losses", ("loss", "swav", "mi", "reg")),
    ("learning rate", ("lr",)),
    ("scores", ("acc", "nmi", "ari")),
)


def _read_history(path: Path) -> list:
    """The records of a ``history.jsonl`` (or of the one in the CLI's output folder ``path``)."""
    if path.is_dir():
        path = path / "history.jsonl"
    records = []
    with path.open(encoding="utf-8") as file:
        try:
            lines = list(file)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text file of JSON records (history.jsonl).") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not a JSON record ({error.msg}).") from None
    return records


def _records(history) -> list[dict]:
    if isinstance(history, (str, os.PathLike)):
        records = _read_history(Path(history))
    elif hasattr(history, "get_params"):
        check_is_fitted(history, "history_")
        records = history.history_
    elif isinstance(history, (list, tuple)):
        records = list(history)
    else:
        raise TypeError(
            "history must be a list of epoch records (history_), a fitted estimator or the "
            f"path of a history.jsonl, got {type(history).__name__}."
        )
    if not records:
        raise ValueError("history is empty: there is no epoch to plot.")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise TypeError(f"history record {number} is a {type(record).__name__}, not a dict.")
    return records


def _curve_keys(records: list[dict], metrics) -> list[str]:
    present = list(dict.fromkeys(key for record in records for key in record))
    if metrics is None:
        keys = [key for _, names in PANELS for key in names if key in present]
        if not keys:
            raise ValueError(
                f"history has none of the keys plotted by default; pass metrics= with some of {present}."
            )
        return keys
    keys = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(keys, (list, tuple)):
        raise TypeError(f"metrics must be a history key or a list of keys, got {type(metrics).__name__}.")
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ValueError("metrics is empty: name at least one history key to plot.")
    missing = [key for key in keys if key not in present]
    if missing:
        raise ValueError(f"history has no {missing}; its keys are {present}.")
    return keys


def _panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of ``keys``: the losses, learning rate and scores together, any other key alone."""
    grouped = {key for _, names in PANELS for key in names}
    panels = [(title, [key for key in names if key in keys]) for title, names in PANELS]
    panels += [(key, [key]) for key in keys if key not in grouped]
    return [(title, names) for title, names in panels if names]


def _series(records: list[dict], epochs: list, key: str) -> tuple[list, list]:
    """The epochs and values of the records that have ``key`` (a JSON null counts as absent)."""
    xs, ys = [], []
    for number, (epoch, record) in enumerate(zip(epochs, records), 1):
        value = record.get(key)
        if value is None:
            continue
        if not is_real(value):
            raise TypeError(f"history record {number}: {key} is {value!r}, not a number.")
        xs.append(epoch)
        ys.append(float(value))
    return xs, ys


def plot_training_curves(history, *, metrics=None, axes=None):
    """Training curves: loss terms, learning rate and, when recorded, ACC/NMI/ARI over the epochs.

    Parameters
    ----------
    history : list of dict, fitted estimator, or path
        ``est.history_``, the fitted estimator itself, or the path of the ``history.jsonl`` that
        ``imc-cluster train`` writes (or of its output folder). Records without some key (no ``acc``
        without an evaluation set, say) leave their epoch out of that curve.
    metrics : str or sequence of str, default=None
        History keys to draw; None: those of ``loss``, ``swav``, ``mi``, ``reg``, ``lr``, ``acc``,
        ``nmi``, ``ari`` present. The loss terms share one panel, the scores another, the learning rate and
        any other key (``seconds``, ``images_per_second``, ...) have their own.
    axes : sequence of matplotlib Axes, default=None
        One Axes per panel; None: a new figure with the panels side by side.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure of the panels; every curve is a line labelled with its key, over the records' ``epoch``
        (or 1, 2, ... when a record has none).
    """
    records = _records(history)
    panels = _panels(_curve_keys(records, metrics))
    plt = pyplot()
    if axes is None:
        _, grid = plt.subplots(
            1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, layout="constrained"
        )
        axes = grid[0]
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != len(panels):
        raise ValueError(f"axes has {len(axes)} Axes for {len(panels)} panels ({[t for t, _ in panels]}).")
    with_epoch = all(is_real(r.get("epoch")) for r in records)
    epochs = [r["epoch"] for r in records] if with_epoch else list(range(1, len(records) + 1))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            ax.plot(*_series(records, epochs, key), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize="small")
    return axes[0].figure
