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

from .estimator import IMCSwAVClustering

__all__ = ["EpochLog", "epoch_line", "EVENT_FILES", "check_json_path", "write_json"]

#: the names of TensorBoard's event files (the only files a fresh run removes from the TensorBoard folder)
EVENT_FILES = "events.out.tfevents.*"
#: the evaluation metrics an epoch line shows, when the record holds them (no labels, no metrics)
_SCORES = ("acc", "nmi", "ari")


def epoch_line(record: dict, total_epochs: int) -> str:
    """The printed line of one epoch's record.

    Parameters
    ----------
    record : dict
        An entry of ``IMCSwAVClustering.history_``: losses, ``lr``, ``seconds``, ``images_per_second`` and
        the evaluation metrics (absent or NaN without labels, which leaves them out of the line).
    total_epochs : int
        The epoch count of the run.

    Returns
    -------
    str
        ``epoch E/N | loss ... swav ... mi ... reg ... | lr ... | test ACC ... NMI ... ARI ... | s, img/s``.
    """
    parts = [f"epoch {record['epoch']}/{total_epochs}",
             " ".join(f"{key} {record[key]:.4f}" for key in ("loss", "swav", "mi", "reg")),
             f"lr {record['lr']:.3g}"]
    scores = [f"{key.upper()} {record[key]:.4f}" for key in _SCORES
              if isinstance(record.get(key), float) and math.isfinite(record[key])]
    if scores:
        parts.append("test " + " ".join(scores))
    parts.append(f"{record['seconds']:.1f} s, {record['images_per_second']:.0f} img/s")
    return " | ".join(parts)


class EpochLog:
    """The ``callbacks`` entry of ``train``: after every epoch, one printed line, ``history.jsonl`` rewritten
    from the estimator's ``history_`` (one JSON line per epoch), and TensorBoard scalars when tensorboard is
    installed.

    Nothing in the output folder changes before the first epoch ends, so a run that fails to start leaves
    an older run's files as they were.

    Parameters
    ----------
    output_dir : Path
        The run's output folder: ``history.jsonl`` and ``tensorboard/`` go there.
    total_epochs : int
        The epoch count of the run, for the printed lines.
    resumed : bool, default=False
        Whether the run continues a checkpoint: its TensorBoard curves continue the folder's, with their
        steps from the first new epoch on hidden; a fresh run removes the folder's event files instead.
    """

    def __init__(self, output_dir: Path, total_epochs: int, resumed: bool = False) -> None:
        self.history = output_dir / "history.jsonl"
        self.tensorboard = output_dir / "tensorboard"
        self.total = total_epochs
        self.resumed = resumed
        self.writer = None
        self.opened = False  # whether the TensorBoard folder was prepared (after the first epoch)

    def __call__(self, estimator: IMCSwAVClustering, record: dict) -> None:
        print(epoch_line(record, self.total), flush=True)
        self.history.write_text("".join(json.dumps(r) + "\n" for r in estimator.history_))
        if not self.opened:
            self.writer, self.opened = self._open_writer(first_epoch=record["epoch"]), True
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (if one was opened)."""
        if self.writer is not None:
            self.writer.close()

    def _open_writer(self, first_epoch: int):
        """A SummaryWriter on the TensorBoard folder (None without tensorboard): after removing an older
        run's event files on a fresh run, or hiding the steps from ``first_epoch`` on when resuming."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        if self.resumed:
            return SummaryWriter(str(self.tensorboard), purge_step=first_epoch)
        for old in self.tensorboard.glob(EVENT_FILES):
            if old.is_file():
                old.unlink()
        return SummaryWriter(str(self.tensorboard))


def check_json_path(path: str | None) -> None:
    """Refuse a ``--json`` file that cannot be written, before the work whose report it would hold.

    Parameters
    ----------
    path : str or None
        The ``--json`` value; None (no report) and ``-`` (stdout) always pass.

    Raises
    ------
    OSError
        When ``path`` is a folder or its folder does not exist; the message names the flag.
    """
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise OSError(f"Cannot write --json {path}: it is a directory.")
    if not target.parent.is_dir():
        raise OSError(f"Cannot write --json {path}: the folder {target.parent} does not exist.")


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
        Path(path).write_text(text)
    except OSError as error:
        raise OSError(f"Cannot write --json {path}: {error.strerror or error}.") from error
