"""What the ``imc-cluster`` commands write besides checkpoints: ``train``'s report after every epoch (a
printed line, ``history.jsonl`` and TensorBoard scalars in the output folder) and ``test``'s JSON report.

A fresh run replaces an older run's history and TensorBoard event files in its output folder; a resumed
run continues them from its checkpoint's epoch, hiding the older run's steps after it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from imc_cluster.core.files import atomic_write, probe_folder
from imc_cluster.estimator.callbacks import TensorBoard
from imc_cluster.estimator.clock import format_duration
from imc_cluster.estimator.estimator import IMCSwAVClustering

__all__ = ["EpochLog", "epoch_line", "k_scores_line", "check_json_path", "write_json"]
#: the evaluation metrics an epoch line shows, when the record holds them (no labels, no metrics)
_SCORES = ("acc", "nmi", "ari")


def epoch_line(record: dict, total_epochs: int) -> str:
    """The printed line of one epoch's record.

    Parameters
    ----------
    record : dict
        An entry of ``IMCSwAVClustering.history_``: losses, ``lr``, ``seconds``, ``images_per_second`` and
        the evaluation metrics (absent or NaN without labels, which leaves them out of the line). Lists
        (one value per candidate K) are shown joined by "/".
    total_epochs : int
        The epoch count of the run.

    Returns
    -------
    str
        ``epoch E/N | loss ... | lr ... | test ACC ... NMI ... ARI ... | s, img/s, time left``.
    """
    parts = [
        f"epoch {record['epoch']}/{total_epochs}",
        " ".join(f"{key} {record[key]:.4f}" for key in ("loss", "swav", "mi", "reg")),
        f"lr {record['lr']:.3g}",
    ]
    scores = [f"{key.upper()} {_numbers(record[key], '.4f')}" for key in _SCORES if _finite(record.get(key))]
    if "confidence" in record:  # the label-free measures (records of 0.3 and before lack them)
        parts.append(
            f"conf {_numbers(record['confidence'], '.3f')} agree {_numbers(record['agreement'], '.3f')} "
            f"used {_numbers(record['clusters_used'], 'd')}"
        )
    if scores:
        parts.append("test " + " ".join(scores))
    timing = f"{record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s"
    if "eta_seconds" in record:  # records of 0.3 and before lack it
        timing += f", {format_duration(record['eta_seconds'])} left"
    parts.append(timing)
    return " | ".join(parts)


def _finite(value) -> bool:
    """Whether a record's score is finite: a float, or a list of them (one per candidate K)."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(isinstance(v, float) and math.isfinite(v) for v in values)


def _numbers(value, spec: str) -> str:
    """A record's number in ``spec``, or its list of numbers (one per candidate K) joined by "/"."""
    return "/".join(format(v, spec) for v in value) if isinstance(value, list) else format(value, spec)


def k_scores_line(n_clusters: int, k_scores: dict) -> str:
    """The printed line of the K chosen among candidates: ``n_clusters K (of ...) | scores K1 s1, ...``."""
    scores = ", ".join(f"{k} {score:.4f}" for k, score in sorted(k_scores.items()))
    return f"n_clusters {n_clusters} (of {len(k_scores)} candidates, the best stability) | scores: {scores}"


class EpochLog:
    """The ``callbacks`` entry of ``train``: after every epoch, one printed line, ``history.jsonl`` rewritten
    from the estimator's ``history_`` (one JSON line per epoch), and TensorBoard scalars in
    ``output_dir/tensorboard`` when tensorboard is installed
    (:class:`~imc_cluster.estimator.callbacks.TensorBoard`: a fresh run replaces the older run's curves there,
    a resumed one continues them).

    Nothing in the output folder changes before the first epoch ends, so a run that fails to start leaves
    an older run's files as they were.

    Parameters
    ----------
    output_dir : Path
        The run's output folder: ``history.jsonl`` and ``tensorboard/`` go there.
    total_epochs : int
        The epoch count of the run, for the printed lines.
    """

    def __init__(self, output_dir: Path, total_epochs: int) -> None:
        self.history = output_dir / "history.jsonl"
        self.total = total_epochs
        try:
            self.tensorboard = TensorBoard(output_dir / "tensorboard")
        except ImportError:  # tensorboard is optional
            self.tensorboard = None

    def __call__(self, estimator: IMCSwAVClustering, record: dict) -> None:
        print(epoch_line(record, self.total), flush=True)
        with atomic_write(self.history, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in estimator.history_)
        if self.tensorboard is not None:
            self.tensorboard(estimator, record)

    def on_fit_end(self, estimator: IMCSwAVClustering) -> None:
        """Close the TensorBoard event file."""
        if self.tensorboard is not None:
            self.tensorboard.on_fit_end(estimator)


def check_json_path(path: str | None) -> None:
    """Refuse a ``--json`` file that cannot be written, before the work whose report it would hold.

    Parameters
    ----------
    path : str or None
        The ``--json`` value; None (no report) and ``-`` (stdout) always pass.

    Raises
    ------
    OSError
        When ``path`` is a folder, its folder does not exist or cannot take a file (a trial file is written
        there and removed); the message names the flag.
    """
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise OSError(f"Cannot write --json {path}: it is a directory.")
    if not target.parent.is_dir():
        raise OSError(f"Cannot write --json {path}: the folder {target.parent} does not exist.")
    try:
        probe_folder(target.parent)
    except OSError as error:
        raise OSError(f"Cannot write --json {path}: {error.strerror or error}.") from error


def write_json(path: str, report: dict) -> None:
    """Write ``report`` as indented JSON to the ``--json`` file ``path``, or to stdout for ``-``.

    Raises
    ------
    OSError
        When the file cannot be written; the message names the flag.
    """
    text = json.dumps(report, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with atomic_write(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise OSError(f"Cannot write --json {path}: {error.strerror or error}.") from error
