"""What the commands write besides checkpoints: test --json, the epoch line, and TensorBoard curves that
never mix runs."""

import builtins
import contextlib
import errno
import io
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.output import epoch_line


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run, digits_train_argv) -> tuple[Path, str]:
    """A tiny digits model after one epoch, and what its ``train`` printed."""
    folder = tmp_path_factory.mktemp("digits")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run(digits_train_argv(folder, folder, 1, "--quiet")) == 0
    return folder / "d.cpt", printed.getvalue()


@pytest.fixture(scope="module")
def checkpoint(trained) -> Path:
    return trained[0]


def scoring_argv(checkpoint: Path, *flags: str) -> list[str]:
    return [
        "test",
        "--dataset",
        "digits",
        "--path",
        str(checkpoint.parent),
        "--limit_test",
        "64",
        "--cpt_load_path",
        str(checkpoint),
        "--dev",
        "cpu",
        *flags,
    ]


# ------------------------------------------------------------------ test --json


def printed_scores(text: str) -> dict[str, float]:
    """``{"acc": ..., ...}`` of the line ``ACC a NMI n ARI r``."""
    words = text.split()
    return {words[i].lower(): float(words[i + 1]) for i in range(0, len(words), 2)}


@pytest.mark.parametrize("flag", ["--json", "--output_json"])
def test_json_report_holds_the_printed_scores(flag, checkpoint, tmp_path, capsys, run):
    target = tmp_path / "scores.json"
    assert run(scoring_argv(checkpoint, flag, str(target))) == 0
    printed = printed_scores(capsys.readouterr().out)
    report = json.loads(target.read_text())
    assert set(report) == {"checkpoint", "dataset", "n_images", "metrics"}
    assert (report["checkpoint"], report["dataset"], report["n_images"]) == (str(checkpoint), "DIGITS", 64)
    assert set(report["metrics"]) == set(printed) == {"acc", "nmi", "ari"}
    for key, value in report["metrics"].items():
        assert isinstance(value, float) and round(value, 4) == printed[key]


def test_json_dash_prints_only_the_json(checkpoint, tmp_path, capsys, run):
    target = tmp_path / "scores.json"
    assert run(scoring_argv(checkpoint, "--json", str(target))) == 0
    capsys.readouterr()
    assert run(scoring_argv(checkpoint, "--json", "-")) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(target.read_text())


def test_json_replaces_an_older_file(checkpoint, tmp_path, capsys, run):
    target = tmp_path / "scores.json"
    target.write_text("x" * 10_000)
    assert run(scoring_argv(checkpoint, "--json", str(target))) == 0
    assert json.loads(target.read_text())["n_images"] == 64


def read_only_folder(tmp_path: Path, monkeypatch) -> Path:
    """A folder in which no file can be created; where permissions do not bind (root), creating a file there
    (by ``os.open``, as temporary files are, or by ``open``) fails as the kernel fails it for other users."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):

        def refusing(open_):
            def denied(file, *args, **kwargs):
                if isinstance(file, (str, os.PathLike)) and Path(file).parent == folder:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
                return open_(file, *args, **kwargs)

            return denied

        for module in (os, io, builtins):
            monkeypatch.setattr(module, "open", refusing(module.open))
    return folder


@pytest.mark.parametrize(
    "where, expected",
    [
        (lambda tmp, mp: tmp / "missing" / "scores.json", "does not exist"),
        (lambda tmp, mp: tmp, "it is a directory"),
        (lambda tmp, mp: read_only_folder(tmp, mp) / "scores.json", "Permission denied"),
    ],
    ids=["missing folder", "a folder", "read-only folder"],
)
def test_unwritable_json_is_one_line_and_status_2(
    where, expected, checkpoint, tmp_path, monkeypatch, capsys, run
):
    target = where(tmp_path, monkeypatch)
    capsys.readouterr()

    def evaluation(*args, **kwargs):
        raise AssertionError("the scores were computed before the --json file was known to be writable")

    monkeypatch.setattr(IMCSwAVClustering, "predict_proba", evaluation)
    assert run(scoring_argv(checkpoint, "--json", str(target))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"imc-cluster: Cannot write --json {target}: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err
    assert not target.is_file()


# ------------------------------------------------------------------ the epoch line


RECORD = dict(
    epoch=3,
    loss=1.5,
    swav=2.0,
    mi=-0.5,
    reg=0.0,
    lr=0.000375,
    seconds=1.25,
    updates=6,
    images_per_second=512.0,
)


def test_epoch_line_shows_the_learning_rate_and_scores():
    line = epoch_line({**RECORD, "acc": 0.5, "nmi": 0.25, "ari": 0.125}, 10)
    assert line == (
        "epoch 3/10 | loss 1.5000 swav 2.0000 mi -0.5000 reg 0.0000 | lr 0.000375 | "
        "test ACC 0.5000 NMI 0.2500 ARI 0.1250 | 1.2 s, 512 img/s"
    )


@pytest.mark.parametrize(
    ("left", "shown"), [(0.0, "0 s left"), (75.4, "75 s left"), (7300.0, "2 h 02 min left")]
)
def test_epoch_line_shows_the_time_left(left, shown):
    line = epoch_line({**RECORD, "eta_seconds": left}, 10)
    assert line.endswith(f"| 1.2 s, 512 img/s, {shown}")


@pytest.mark.parametrize(
    "scores", [{}, {"acc": math.nan, "nmi": math.nan, "ari": math.nan}], ids=["absent", "nan"]
)
def test_epoch_line_without_labels_has_no_scores(scores):
    line = epoch_line({**RECORD, **scores}, 10)
    assert "nan" not in line.lower() and "test" not in line and "ACC" not in line
    assert line == (
        "epoch 3/10 | loss 1.5000 swav 2.0000 mi -0.5000 reg 0.0000 | lr 0.000375 | 1.2 s, 512 img/s"
    )


def test_printed_epoch_line_matches_the_history(trained):
    checkpoint, printed = trained
    lines = [line for line in printed.splitlines() if line.startswith("epoch ")]
    history = [json.loads(line) for line in (checkpoint.parent / "history.jsonl").read_text().splitlines()]
    assert lines == [epoch_line(record, 1) for record in history] and len(lines) == 1
    assert all(f"| lr {record['lr']:.3g} |" in line for line, record in zip(lines, history))


# ------------------------------------------------------------------ TensorBoard


def curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar's (step, value) pairs as TensorBoard shows them."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed"
    )
    events = accumulator.EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def history_curve(out: Path, key: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return [(record["epoch"], pytest.approx(record[key], rel=1e-6)) for record in records]


@pytest.fixture
def needs_tensorboard():
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")


def event_files(out: Path) -> list[Path]:
    return sorted((out / "tensorboard").glob("events.out.tfevents.*"))


def test_fresh_run_replaces_an_older_runs_curves(needs_tensorboard, tmp_path, capsys, run, digits_train_argv):
    out = tmp_path / "out"
    assert run(digits_train_argv(tmp_path, out, 2, "--quiet")) == 0
    assert [step for step, _ in curves(out / "tensorboard")["loss"]] == [1, 2]
    (out / "tensorboard" / "notes.txt").write_text("mine")
    assert run(digits_train_argv(tmp_path, out, 1, "--quiet", "--seed", "1")) == 0
    shown = curves(out / "tensorboard")
    assert shown["loss"] == history_curve(out, "loss") and len(shown["loss"]) == 1
    assert shown["acc"] == history_curve(out, "acc") and shown["lr"] == history_curve(out, "lr")
    assert len(event_files(out)) == 1 and (out / "tensorboard" / "notes.txt").read_text() == "mine"
    # a run that fails before its first epoch leaves the older run's files as they were
    before = [path.read_bytes() for path in event_files(out)], (out / "history.jsonl").read_text()
    assert run(digits_train_argv(tmp_path, out, 1, "--quiet", "--batch_size", "1")) == 2
    assert ([path.read_bytes() for path in event_files(out)], (out / "history.jsonl").read_text()) == before


def test_resume_continues_the_curves_without_the_steps_it_redoes(
    needs_tensorboard, tmp_path, capsys, run, digits_train_argv
):
    out = tmp_path / "out"
    assert run(digits_train_argv(tmp_path, out, 1, "--quiet")) == 0
    first = shutil.copy(out / "d.cpt", tmp_path / "epoch1.cpt")
    for _ in range(2):  # the second resume redoes epoch 2 from the same checkpoint
        assert run(digits_train_argv(tmp_path, out, 2, "--quiet", "--cpt_load_path", str(first))) == 0
        shown = curves(out / "tensorboard")
        assert shown["loss"] == history_curve(out, "loss") and [s for s, _ in shown["loss"]] == [1, 2]
        assert shown["acc"] == history_curve(out, "acc")
    assert IMCSwAVClustering.load(out / "d.cpt").n_iter_ == 2


def test_epoch_line_shows_the_label_free_measures():
    line = epoch_line({**RECORD, "confidence": 0.625, "agreement": 0.8125, "clusters_used": 7}, 10)
    assert "| lr 0.000375 | conf 0.625 agree 0.812 used 7 | 1.2 s" in line
