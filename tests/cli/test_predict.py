"""The predict command: the table, the picture and the summary of a folder predicted in bounded batches,
its progress bar only on a terminal, and every error in one line."""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.main import main
from imc_cluster.prediction.typical import PADDING


def _rows(file: Path) -> list[dict]:
    with open(file, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_the_table_the_picture_and_the_summary(
    photos_model, photos, tmp_path, run_cli, save_photo, photos_clusters
):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder, ignore=shutil.ignore_patterns(".*"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / ".hidden.png").write_bytes(b"skipped")
    (folder / "notes.txt").write_text("skipped")
    save_photo(folder / "album" / "big.png", np.full((90, 40, 3), 200, np.uint8))
    out = tmp_path / "clusters"
    status, text, err = run_cli(
        ["predict", "--cpt_load_path", photos_model[0], "--path", folder, "--output_dir", out, "--dev", "cpu"]
    )
    assert status == 0, err
    assert err.startswith("imc-cluster: warning: skipped broken.jpg") and err.count("\n") == 1
    assert "14 of 15 image files" in text and "1 unreadable" in text

    rows = _rows(out / "clusters.csv")
    readable = sorted(
        [path.name for path in photos.iterdir() if path.is_file()] + ["album/big.png"],
        key=lambda name: tuple(name.split("/")),
    )
    assert list(rows[0]) == [
        "path",
        "cluster",
        "confidence",
        "next_cluster",
        "next_confidence",
        "uncertain",
        "placed_as",
    ]
    assert {row["uncertain"] for row in rows} == {"false"} and {row["placed_as"] for row in rows} == {""}
    assert [row["path"] for row in rows] == readable
    clusters = np.array([int(row["cluster"]) for row in rows])
    confidence = np.array([float(row["confidence"]) for row in rows])
    runner_up = np.array([float(row["next_confidence"]) for row in rows])
    assert ((clusters >= 0) & (clusters < photos_clusters)).all()
    assert ((confidence >= 0) & (confidence <= 1)).all() and (confidence >= runner_up).all()
    assert all(int(row["next_cluster"]) != int(row["cluster"]) for row in rows)
    assert (confidence >= 1 / photos_clusters - 1e-6).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] == str(photos_model[0]) and summary["folder"] == str(folder.resolve())
    assert (summary["n_files"], summary["n_predicted"], summary["n_unreadable"]) == (15, 14, 1)
    assert summary["cluster_sizes"] == np.bincount(clusters, minlength=photos_clusters).tolist()
    for cluster, mean in enumerate(summary["mean_confidence"]):
        members = confidence[clusters == cluster]
        assert mean is None if not len(members) else mean == pytest.approx(members.mean(), abs=1e-5)
    assert [entry["path"] for entry in summary["unreadable"]] == ["broken.jpg"]
    assert "broken.jpg" in summary["unreadable"][0]["error"]
    assert summary["outputs"] == {
        "table": "clusters.csv",
        "picture": "clusters.png",
        "summary": "summary.json",
    }

    with Image.open(out / "clusters.png") as picture:
        picture.load()
    non_empty = len(set(clusters.tolist()))
    assert picture.format == "PNG" and picture.height == PADDING + non_empty * (64 + PADDING)
    assert not list(out.glob("*.tmp"))


def test_predict_reads_in_bounded_batches_with_the_same_results(
    photos_model, photos, tmp_path, monkeypatch, run_cli
):
    sizes = []
    transform = IMCSwAVClustering.transform

    def recording(self, X):
        sizes.append(len(X))
        return transform(self, X)

    monkeypatch.setattr(IMCSwAVClustering, "transform", recording)
    results = {}
    for batch_size in (3, 100):
        out = tmp_path / str(batch_size)
        assert (
            run_cli(
                [
                    "predict",
                    "--cpt_load_path",
                    photos_model[0],
                    "--path",
                    photos,
                    "--output_dir",
                    out,
                    "--batch_size",
                    batch_size,
                    "--quiet",
                ]
            )[0]
            == 0
        )
        results[batch_size] = _rows(out / "clusters.csv")
    assert sizes == [3, 3, 3, 3, 1, 13]
    small, large = results[3], results[100]
    assert [(r["path"], r["cluster"], r["next_cluster"]) for r in small] == [
        (r["path"], r["cluster"], r["next_cluster"]) for r in large
    ]
    for key in ("confidence", "next_confidence"):
        np.testing.assert_allclose([float(r[key]) for r in small], [float(r[key]) for r in large], atol=2e-6)


def test_progress_bar_only_on_a_terminal(photos_model, photos, tmp_path, monkeypatch, capsys):
    for terminal, quiet in ((False, False), (True, True), (True, False)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda terminal=terminal: terminal)
        flags = ["--quiet"] if quiet else []
        assert (
            main(
                [
                    "predict",
                    "--cpt_load_path",
                    str(photos_model[0]),
                    "--path",
                    str(photos),
                    "--output_dir",
                    str(tmp_path / "out"),
                    *flags,
                ]
            )
            == 0
        )
        err = capsys.readouterr().err
        assert ("13/13" in err) == (terminal and not quiet), err


# ---------------------------------------------------------------- errors of the command


def _predict(setup, *flags):
    checkpoint, photos, tmp = setup
    base = {"--cpt_load_path": checkpoint, "--path": photos, "--output_dir": tmp / "out", "--dev": "cpu"}
    base.update(dict(zip(flags[::2], flags[1::2])))
    return ["predict", *[item for key, value in base.items() if value is not None for item in (key, value)]]


def _folder(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    for file, content in files.items():
        (tmp / name / file).write_bytes(content)
    return tmp / name


def _vector_checkpoint(tmp: Path, tiny) -> Path:
    X = np.random.default_rng(0).normal(size=(30, 6))
    tiny(n_clusters=2).fit(X).save(tmp / "vectors.cpt")
    return tmp / "vectors.cpt"


#: (name, argv builder (setup, tmp, tiny) -> argv, expected part of the one-line message)
ERRORS = [
    ("predict without --path", lambda s, t, tiny: _predict(s, "--path", None), "required: --path"),
    ("predict on a missing folder", lambda s, t, tiny: _predict(s, "--path", t / "none"), "none not found"),
    (
        "predict on a file",
        lambda s, t, tiny: _predict(s, "--path", s[0]),
        "is a file, but a folder is needed",
    ),
    (
        "predict on an empty folder",
        lambda s, t, tiny: _predict(s, "--path", _folder(t, "empty", {})),
        "No image files under",
    ),
    (
        "predict on no readable image",
        lambda s, t, tiny: _predict(s, "--path", _folder(t, "bad", {"a.png": b"x", "b.jpg": b""})),
        "None of the 2 image files",
    ),
    (
        "predict from a missing checkpoint",
        lambda s, t, tiny: _predict(s, "--cpt_load_path", t / "none.cpt"),
        "none.cpt",
    ),
    (
        "predict from a corrupt checkpoint",
        lambda s, t, tiny: _predict(s, "--cpt_load_path", _folder(t, "c", {"bad.cpt": b"junk"}) / "bad.cpt"),
        "bad.cpt",
    ),
    (
        "predict with a model of vectors",
        lambda s, t, tiny: _predict(s, "--cpt_load_path", _vector_checkpoint(t, tiny)),
        "feature vectors",
    ),
    (
        "predict into a file",
        lambda s, t, tiny: _predict(s, "--output_dir", s[0]),
        "Cannot create the output folder",
    ),
    (
        "predict under a file",
        lambda s, t, tiny: _predict(s, "--output_dir", s[0] / "out"),
        "Cannot create the output folder",
    ),
    ("predict with batch_size 0", lambda s, t, tiny: _predict(s, "--batch_size", 0), "--batch_size must be"),
    (
        "predict with batch_size abc",
        lambda s, t, tiny: _predict(s, "--batch_size", "abc"),
        "invalid int value",
    ),
    ("predict on an unknown device", lambda s, t, tiny: _predict(s, "--dev", "tpu"), "--dev must be"),
    *[
        (
            f"predict with min_confidence {value}",
            lambda s, t, tiny, v=value: _predict(s, "--min_confidence", v),
            message,
        )
        for value, message in [
            ("-0.1", "min_confidence must be between 0 and 1, got -0.1"),
            ("1.5", "min_confidence must be between 0 and 1, got 1.5"),
            ("nan", "min_confidence must be between 0 and 1, got nan"),
            ("abc", "invalid float value: 'abc'"),
        ]
    ],
    (
        "predict copying and linking",
        lambda s, t, tiny: _predict(s, "--copy_to", t / "a", "--link_to", t / "b"),
        "copy_to and link_to exclude each other",
    ),
    (
        "predict copying into a file",
        lambda s, t, tiny: _predict(s, "--copy_to", s[0]),
        "argument --copy_to: ",
    ),
    (
        "predict linking into the photo folder",
        lambda s, t, tiny: _predict(s, "--link_to", s[1] / "sorted"),
        "is inside the image folder",
    ),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=n) for n, b, e in ERRORS])
def test_errors_are_one_line_and_status_2(build, expected, photos_model, photos, tmp_path, tiny, run_cli):
    status, _, err = run_cli(build((photos_model[0], photos, tmp_path), tmp_path, tiny))
    assert status == 2, err
    assert err.startswith("imc-cluster: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err


def test_predict_links_every_file_into_its_cluster_folder(photos_model, photos, tmp_path, run_cli):
    argv = _predict(
        (photos_model[0], photos, tmp_path), "--link_to", tmp_path / "linked", "--min_confidence", 1
    )
    status, text, err = run_cli([*argv, "--quiet"])
    if status != 0 and "symbolic" in err.lower():
        pytest.skip(f"no symbolic links here: {err}")
    assert status == 0, err
    assert f"linked 13 files into {tmp_path / 'linked'} (13 uncertain)" in text
    rows = _rows(tmp_path / "out" / "clusters.csv")
    assert {row["uncertain"] for row in rows} == {"true"}
    links = sorted(path.name for path in (tmp_path / "linked" / "uncertain").iterdir())
    assert links == sorted(row["path"] for row in rows)
    for row in rows:
        link = tmp_path / "linked" / row["placed_as"]
        assert link.is_symlink() and os.readlink(link) == str((photos / row["path"]).resolve())
