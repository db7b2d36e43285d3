"""The clock of a fit: its time budget (``max_time``), the time it has left, and a warning before a run
that would take long."""

from __future__ import annotations

import time
import warnings

from imc_cluster.core.callers import user_stacklevel
from imc_cluster.estimator.callbacks import StopTraining
from imc_cluster.estimator.params import ConfigurationWarning

__all__ = ["LONG_RUN_SECONDS", "ESTIMATE_STEPS", "RunClock", "format_duration"]

#: a run estimated to take longer than this is announced, with the ways to shorten it
LONG_RUN_SECONDS = 30 * 60
#: training steps timed before the run's length is estimated (the first one warms up and is not counted)
ESTIMATE_STEPS = 4


def format_duration(seconds: float) -> str:
    """``seconds`` as people read them: "45 s", "12 min", "3 h 20 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


class RunClock:
    """The time of one call of ``fit``.

    Parameters
    ----------
    max_time : float or None
        The time budget in seconds (``max_time``), or None for none.
    epochs, steps : int
        Epochs this call runs at most, and training steps per epoch.
    device : str
        The device, named in the long-run warning.
    """

    def __init__(self, max_time: float | None, epochs: int, steps: int, device: str) -> None:
        self.max_time, self.epochs, self.steps, self.device = max_time, epochs, steps, device
        self.start = time.monotonic()
        self._stepped = 0
        self._timing_from: float | None = None

    def elapsed(self) -> float:
        """Seconds since the fit started."""
        return time.monotonic() - self.start

    def time_left(self, epochs_done: int) -> float:
        """Estimated seconds to the end of the run after ``epochs_done`` epochs of this call: the remaining
        epochs at the mean epoch time so far, or what is left of the budget when that is less."""
        elapsed = self.elapsed()
        left = elapsed / max(epochs_done, 1) * (self.epochs - epochs_done)
        if self.max_time is not None:
            left = min(left, max(self.max_time - elapsed, 0.0))
        return round(left, 1)

    def check_budget(self, estimator, record: dict) -> None:
        """A callback: end the fit (:class:`StopTraining`) once the time budget is spent (after the epoch of
        ``record``; in a distributed fit rank 0's clock decides for every rank)."""
        if self.max_time is not None and self.elapsed() >= self.max_time:
            raise StopTraining(f"The time budget max_time={self.max_time:g} s is spent.")

    def on_step(self) -> None:
        """Count a training step; after the first few, warn once if the whole run would take long."""
        self._stepped += 1
        if self._stepped == 1:
            self._timing_from = time.monotonic()
        elif self._stepped == ESTIMATE_STEPS + 1:
            per_step = (time.monotonic() - self._timing_from) / ESTIMATE_STEPS
            self._warn_if_long(per_step * self.steps * self.epochs)

    def _warn_if_long(self, estimate: float) -> None:
        if self.max_time is not None and self.max_time < estimate:
            estimate = self.max_time
        if estimate <= LONG_RUN_SECONDS:
            return
        warnings.warn(
            f"This fit will take about {format_duration(estimate)} on {self.device} ({self.epochs} epochs of "
            f"{self.steps} steps). To shorten it: set a time budget (max_time, --max_time 15m), fewer epochs "
            "(max_epochs), smaller images (image_size), or a frozen pretrained encoder (backbone="
            "'torchvision:resnet50', weights='pretrained'), which trains in seconds per epoch.",
            ConfigurationWarning,
            stacklevel=user_stacklevel(),
        )
