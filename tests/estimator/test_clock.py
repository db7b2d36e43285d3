"""The time budget (max_time), the time left in every record, and the warning before a long run."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from imc_cluster.estimator import clock as clock_module
from imc_cluster.estimator.clock import LONG_RUN_SECONDS, RunClock, format_duration
from imc_cluster.estimator.params import ConfigurationWarning


class FakeTime:
    """A monotonic clock that advances ``step`` seconds at every reading."""

    def __init__(self, step: float) -> None:
        self.now = itertools.count(0.0, step)

    def monotonic(self) -> float:
        return next(self.now)


@pytest.fixture
def fake_time(monkeypatch):
    def install(step: float) -> None:
        monkeypatch.setattr(clock_module, "time", FakeTime(step))

    return install


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (45.2, "45 s"), (89, "89 s"), (600, "10 min"), (12_000, "3 h 20 min")]
)
def test_durations_read_as_people_read_them(seconds, text):
    assert format_duration(seconds) == text


def test_the_fit_ends_after_the_epoch_in_which_the_budget_runs_out(tiny, rgb_images, fake_time):
    fake_time(1.0)  # every reading of the clock is a second later
    est = tiny(max_epochs=50, max_time=5.0, batch_size=12).fit(rgb_images[0])
    assert 1 <= est.n_iter_ < 50
    assert est.labels_.shape == (24,)
    assert not est.model_.training  # finished as after a last epoch
    assert [r["epoch"] for r in est.history_] == list(range(1, est.n_iter_ + 1))
    assert est.history_[-1]["eta_seconds"] <= 1.0  # a reading of the clock before the budget ran out


def test_a_warm_start_continues_a_fit_that_ran_out_of_time(tiny, rgb_images, fake_time):
    fake_time(1.0)
    est = tiny(max_epochs=50, max_time=5.0, batch_size=12).fit(rgb_images[0])
    first = est.n_iter_
    est.set_params(warm_start=True).fit(rgb_images[0])
    assert first < est.n_iter_ < 50


def test_without_a_budget_the_fit_runs_every_epoch_and_counts_down(tiny, rgb_images):
    est = tiny(max_epochs=3, batch_size=12).fit(rgb_images[0])
    assert est.n_iter_ == 3
    left = [r["eta_seconds"] for r in est.history_]
    assert left[-1] == 0.0 and all(value >= 0 for value in left)


def test_time_left_is_the_mean_epoch_time_or_the_budget_left(fake_time):
    fake_time(10.0)
    clock = RunClock(None, epochs=4, steps=1, device="cpu")  # started at 0
    assert clock.time_left(1) == pytest.approx(10.0 * 3)  # read at 10 s: 10 s per epoch, 3 to go
    budgeted = RunClock(25.0, epochs=4, steps=1, device="cpu")  # started at 20
    assert budgeted.time_left(1) == pytest.approx(25.0 - 10.0)  # read at 30: 15 s of the budget left


@pytest.mark.parametrize("max_time", [0, -1, "15m", float("nan"), True])
def test_a_bad_budget_is_refused(tiny, rgb_images, max_time):
    with pytest.raises((ValueError, TypeError), match="max_time"):
        tiny(max_time=max_time).fit(rgb_images[0])


def _steps(clock: RunClock, n: int) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(n):
            clock.on_step()
    return [w for w in caught if issubclass(w.category, ConfigurationWarning)]


def test_a_long_run_is_announced_once_with_the_ways_to_shorten_it(fake_time):
    fake_time(10.0)  # 10 s from one reading of the clock to the next: 2.5 s per step
    caught = _steps(RunClock(None, epochs=100, steps=50, device="cpu"), 20)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "max_time" in message and "max_epochs" in message and "pretrained" in message and "cpu" in message


def test_a_short_run_or_a_short_budget_is_not_announced(fake_time):
    fake_time(10.0)
    assert not _steps(RunClock(None, epochs=2, steps=50, device="cpu"), 20)
    assert not _steps(RunClock(LONG_RUN_SECONDS / 2, epochs=100, steps=50, device="cpu"), 20)


def test_the_budget_check_is_a_callback_that_stops_training(fake_time):
    from imc_cluster.estimator.callbacks import StopTraining

    fake_time(1.0)
    clock = RunClock(2.0, epochs=10, steps=1, device="cpu")
    clock.check_budget(None, {"epoch": 1})  # read at 1 s: within the budget
    with pytest.raises(StopTraining, match="max_time=2"):
        clock.check_budget(None, {"epoch": 2})
    assert np.isfinite(clock.elapsed())
