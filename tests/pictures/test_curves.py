"""The training curves on the Agg backend: which values each curve holds, from a history, a fitted
estimator or the command line's history file, and every input error."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from imc_cluster import IMCSwAVClustering, plot_training_curves


def _fake_history() -> list[dict]:
    """Eight epochs; only every other one evaluated, the first two without mi/reg, one lr missing."""
    rng = np.random.default_rng(5)
    records = []
    for epoch in range(1, 9):
        record = {
            "loss": float(rng.normal()),
            "swav": float(rng.random()),
            "epoch": epoch,
            "seconds": 1.5,
            "updates": 3 * epoch,
        }
        if epoch > 2:
            record.update(mi=float(-rng.random()), reg=float(rng.random()) / 10)
        if epoch != 4:
            record["lr"] = 1e-3 * 0.4 ** (epoch // 3)
        if epoch % 2 == 0:
            record.update(acc=float(rng.random()), nmi=float(rng.random()), ari=float(rng.random()))
        records.append(record)
    return records


def _lines(figure) -> dict[str, tuple[str, list, list]]:
    return {
        line.get_label(): (ax.get_title(), list(line.get_xdata()), list(line.get_ydata()))
        for ax in figure.axes
        for line in ax.get_lines()
    }


def _expected_lines(records: list[dict], keys, titles) -> dict:
    return {
        key: (
            titles[key],
            [r["epoch"] for r in records if r.get(key) is not None],
            [r[key] for r in records if r.get(key) is not None],
        )
        for key in keys
    }


TITLES = {
    **dict.fromkeys(["loss", "swav", "mi", "reg"], "losses"),
    "lr": "learning rate",
    **dict.fromkeys(["acc", "nmi", "ari"], "scores"),
}


def test_curves_hold_the_history_values(tmp_path, saves_png):
    records = _fake_history()
    figure = plot_training_curves(records)
    assert [ax.get_title() for ax in figure.axes] == ["losses", "learning rate", "scores"]
    lines = _lines(figure)
    assert lines == _expected_lines(records, TITLES, TITLES)
    assert len(lines["acc"][1]) == 4 and len(lines["mi"][1]) == 6 and len(lines["lr"][1]) == 7
    saves_png(figure, tmp_path / "curves.png")


def test_curves_of_chosen_metrics_on_given_axes():
    records = _fake_history()
    figure, axes = plt.subplots(2, 2)
    assert plot_training_curves(records, metrics=["nmi", "seconds", "loss", "updates"], axes=axes) is figure
    assert [ax.get_title() for ax in axes.ravel()] == ["losses", "scores", "seconds", "updates"]
    assert _lines(figure) == _expected_lines(
        records, ["loss", "nmi", "seconds", "updates"], {**TITLES, "seconds": "seconds", "updates": "updates"}
    )
    one = plot_training_curves(records, metrics="lr")
    assert [ax.get_title() for ax in one.axes] == ["learning rate"]


def test_curves_need_one_axes_per_panel():
    ax = plt.figure().add_subplot()
    with pytest.raises(ValueError, match=r"1 Axes for 2 panels \(\['losses', 'learning rate'\]\)"):
        plot_training_curves([{"loss": 1.0, "lr": 0.1}], axes=[ax])
    assert plot_training_curves([{"loss": 1.0, "lr": 0.1}], metrics="lr", axes=ax) is ax.figure
    assert _lines(ax.figure) == {"lr": ("learning rate", [1], [0.1])}


def test_curves_without_epochs_count_the_records():
    records = [{"loss": 3.0}, {"loss": 2.0, "epoch": 7}, {"loss": 1.0}]
    assert _lines(plot_training_curves(records))["loss"] == ("losses", [1, 2, 3], [3.0, 2.0, 1.0])


def test_curves_read_the_cli_history_file_and_a_fitted_estimator(fitted):
    est, _, _, output_dir = fitted
    lines = _lines(plot_training_curves(est))
    assert set(lines) == {"loss", "swav", "mi", "reg", "lr", "acc", "nmi", "ari"}
    assert lines == _expected_lines(est.history_, lines, TITLES)
    assert _lines(plot_training_curves(output_dir / "history.jsonl")) == lines
    assert _lines(plot_training_curves(str(output_dir))) == lines  # the CLI's output folder


def test_curves_read_json_nan_null_and_blank_lines(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 1, "loss": 2.5, "acc": NaN}\n\n{"epoch": 2, "loss": 2.0, "acc": null}\n')
    lines = _lines(plot_training_curves(path))
    assert lines["loss"] == ("losses", [1, 2], [2.5, 2.0])
    assert lines["acc"][1] == [1] and np.isnan(lines["acc"][2][0])


def test_curves_of_an_unfitted_estimator():
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_training_curves(IMCSwAVClustering())


@pytest.mark.parametrize(
    "history, kwargs, error, message",
    [
        ([], {}, ValueError, "history is empty"),
        ({"loss": 1.0}, {}, TypeError, "got dict"),
        (3, {}, TypeError, "list of epoch records"),
        ([{"loss": 1.0}, [1.0]], {}, TypeError, "record 2 is a list"),
        ([{"loss": 1.0}, {"loss": "high"}], {}, TypeError, "record 2: loss is 'high', not a number"),
        ([{"loss": True}], {}, TypeError, "not a number"),
        ([{"seconds": 1.0}], {}, ValueError, "none of the keys plotted by default"),
        ([{"loss": 1.0}], {"metrics": ["loss", "acc"]}, ValueError, r"history has no \['acc'\]"),
        ([{"loss": 1.0}], {"metrics": []}, ValueError, "metrics is empty"),
        ([{"loss": 1.0}], {"metrics": 3}, TypeError, "metrics must be a history key or a list"),
    ],
)
def test_curves_errors(history, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_training_curves(history, **kwargs)


@pytest.mark.parametrize(
    "content, error, message",
    [
        (b'{"loss": 1.0}\n{"loss": 2.0\n', ValueError, "line 2: not a JSON record"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", ValueError, "not a text file"),
        (b"[1, 2]\n", TypeError, "record 1 is a list"),
        (b"", ValueError, "history is empty"),
    ],
)
def test_curves_file_errors(tmp_path, content, error, message):
    path = tmp_path / "history.jsonl"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        plot_training_curves(path)


def test_curves_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path / "nothing.jsonl")
    with pytest.raises(FileNotFoundError):
        plot_training_curves(tmp_path)  # a folder without history.jsonl
