"""From a folder of photos to a picture of the clusters: train on an unlabelled folder, predict a folder in
batches, the table, the picture and the summary, the typical images, and every error of the commands."""

import contextlib
import csv
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc_cluster import IMCSwAVClustering, load_image_folder, predict_folder
from imc_cluster.cli import main
from imc_cluster.gallery import PADDING, TypicalImages, gallery_image

#: a one-epoch run of a tiny network
TINY = ["--epochs", "1", "--batch_size", "8", "--prototypes", "10", "--backbone_width", "4", "--warmup", "1",
        "--project_dim", "8", "--dev", "cpu", "--quiet"]
CLUSTERS = 3


def _save(file: Path, array: np.ndarray) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(file, **({"quality": 95} if file.suffix == ".jpg" else {}))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A flat folder of 13 readable images of mixed sizes around 16x16, PNG and JPEG, dark and bright, one
    of them grey."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(12):
        low = 0 if index % 2 else 170
        shape = (14 + index % 4 * 2, 16 + index % 3 * 4, 3)
        _save(folder / f"photo{index:02d}.{'png' if index % 3 else 'jpg'}",
              rng.integers(low, low + 86, shape, dtype=np.uint8))
    _save(folder / "grey.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    return folder


def run(argv: list[str]) -> tuple[int, str, str]:
    """``imc-cluster argv`` in this process: exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> tuple[Path, str]:
    """The checkpoint of a tiny model trained on the unlabelled photos, and the output of ``train``."""
    out = tmp_path_factory.mktemp("run")
    status, text, err = run(["train", "--dataset", "folder", "--path", photos, "--image_size", "16",
                             "--n_clusters", CLUSTERS, *TINY, "--output_dir", out])
    assert status == 0, err
    return out / "model.cpt", text


def test_train_on_an_unlabelled_folder_of_mixed_sizes(trained):
    checkpoint, text = trained
    assert "epoch 1/1 | loss" in text and "ACC" not in text and "nan" not in text
    estimator = IMCSwAVClustering.load(checkpoint)
    assert estimator.input_shape_ == (3, 16, 16) and estimator.n_clusters == CLUSTERS
    assert estimator.labels_.shape == (13,) and "acc" not in estimator.history_[-1]


def test_train_leaves_out_an_unreadable_file_with_one_warning_line(photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    status, text, err = run(["train", "--dataset", "folder", "--path", folder, "--image_size", "16",
                             "--n_clusters", CLUSTERS, *TINY, "--output_dir", tmp_path / "run"])
    assert status == 0, err
    lines = [line for line in err.splitlines() if "image file" in line]  # not the batch size's warning
    assert len(lines) == 1 and lines[0].startswith("imc-cluster: warning: Skipped 1 image file(s) under ")
    assert "sub/broken.png: Cannot decode the image file" in lines[0]
    assert IMCSwAVClustering.load(tmp_path / "run" / "model.cpt").labels_.shape == (13,)


def test_class_folders_default_k_which_n_clusters_overrides_and_a_resume_keeps_k(trained, photos, tmp_path):
    rng = np.random.default_rng(3)
    for name in ("ant", "bee"):
        for index in range(4):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            _save(tmp_path / "tree" / name / f"{index}.png", image)
    for flags, expected in (([], 2), (["--n_clusters", "3"], 3)):
        out = tmp_path / f"k{expected}"
        status, text, err = run(["train", "--dataset", "folder", "--path", tmp_path / "tree", *TINY, *flags,
                                 "--output_dir", out])
        assert status == 0, err
        assert "test ACC" in text and IMCSwAVClustering.load(out / "model.cpt").n_clusters == expected
    resumed = tmp_path / "resumed"
    status, text, err = run(["train", "--dataset", "folder", "--path", photos, "--image_size", "16", *TINY,
                             "--epochs", "2", "--cpt_load_path", trained[0], "--output_dir", resumed])
    assert status == 0, err
    assert "epoch 2/2" in text and IMCSwAVClustering.load(resumed / "model.cpt").n_clusters == CLUSTERS


def _rows(file: Path) -> list[dict]:
    with open(file, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_the_table_the_picture_and_the_summary(trained, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder, ignore=shutil.ignore_patterns(".*"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / ".hidden.png").write_bytes(b"skipped")
    (folder / "notes.txt").write_text("skipped")
    _save(folder / "album" / "big.png", np.full((90, 40, 3), 200, np.uint8))
    out = tmp_path / "clusters"
    status, text, err = run(["predict", "--cpt_load_path", trained[0], "--path", folder, "--output_dir", out,
                             "--dev", "cpu"])
    assert status == 0, err
    assert err.startswith("imc-cluster: warning: skipped broken.jpg") and err.count("\n") == 1
    assert "14 of 15 image files" in text and "1 unreadable" in text

    rows = _rows(out / "clusters.csv")
    readable = sorted([path.name for path in photos.iterdir() if path.is_file()] + ["album/big.png"],
                      key=lambda name: tuple(name.split("/")))
    assert list(rows[0]) == ["path", "cluster", "confidence", "next_cluster", "next_confidence"]
    assert [row["path"] for row in rows] == readable
    clusters = np.array([int(row["cluster"]) for row in rows])
    confidence = np.array([float(row["confidence"]) for row in rows])
    runner_up = np.array([float(row["next_confidence"]) for row in rows])
    assert ((clusters >= 0) & (clusters < CLUSTERS)).all()
    assert ((confidence >= 0) & (confidence <= 1)).all() and (confidence >= runner_up).all()
    assert all(int(row["next_cluster"]) != int(row["cluster"]) for row in rows)
    assert (confidence >= 1 / CLUSTERS - 1e-6).all()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] == str(trained[0]) and summary["folder"] == str(folder.resolve())
    assert (summary["n_files"], summary["n_predicted"], summary["n_unreadable"]) == (15, 14, 1)
    assert summary["cluster_sizes"] == np.bincount(clusters, minlength=CLUSTERS).tolist()
    for cluster, mean in enumerate(summary["mean_confidence"]):
        members = confidence[clusters == cluster]
        assert mean is None if not len(members) else mean == pytest.approx(members.mean(), abs=1e-5)
    assert [entry["path"] for entry in summary["unreadable"]] == ["broken.jpg"]
    assert "broken.jpg" in summary["unreadable"][0]["error"]
    assert summary["outputs"] == {"table": "clusters.csv", "picture": "clusters.png",
                                  "summary": "summary.json"}

    with Image.open(out / "clusters.png") as picture:
        picture.load()
    non_empty = len(set(clusters.tolist()))
    assert picture.format == "PNG" and picture.height == PADDING + non_empty * (64 + PADDING)
    assert not list(out.glob("*.tmp"))


def test_predict_reads_in_bounded_batches_with_the_same_results(trained, photos, tmp_path, monkeypatch):
    sizes = []
    predict_proba = IMCSwAVClustering.predict_proba

    def recording(self, X):
        sizes.append(len(X))
        return predict_proba(self, X)

    monkeypatch.setattr(IMCSwAVClustering, "predict_proba", recording)
    results = {}
    for batch_size in (3, 100):
        out = tmp_path / str(batch_size)
        assert run(["predict", "--cpt_load_path", trained[0], "--path", photos, "--output_dir", out,
                    "--batch_size", batch_size, "--quiet"])[0] == 0
        results[batch_size] = _rows(out / "clusters.csv")
    assert sizes == [3, 3, 3, 3, 1, 13]
    small, large = results[3], results[100]
    assert [(r["path"], r["cluster"], r["next_cluster"]) for r in small] == \
        [(r["path"], r["cluster"], r["next_cluster"]) for r in large]
    for key in ("confidence", "next_confidence"):
        np.testing.assert_allclose([float(r[key]) for r in small], [float(r[key]) for r in large], atol=2e-6)


def test_predict_folder_is_predict_proba_of_the_centre_cropped_images(trained, photos):
    estimator = IMCSwAVClustering.load(trained[0])
    prediction = predict_folder(estimator, photos, batch_size=4)
    expected = estimator.predict_proba(load_image_folder(photos, 16, channels=3).images)
    np.testing.assert_array_equal(prediction.clusters, expected.argmax(axis=1))
    np.testing.assert_allclose(prediction.confidence, expected.max(axis=1), atol=1e-6)
    assert prediction.checkpoint is None and prediction.n_files == 13 and not prediction.failures
    assert prediction.typical.counts.tolist() == prediction.cluster_sizes.tolist()


def test_a_model_of_small_grey_arrays_clusters_colour_photos(photos, tmp_path, tiny):
    """A model fitted on 8x8 grey arrays (like the digits) takes any image file: centre-cropped, resized to
    8x8 and made grey."""
    images = np.random.default_rng(1).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    tiny(n_clusters=2, max_epochs=1, n_small_crops=0).fit(images).save(tmp_path / "grey.cpt")
    prediction = predict_folder(tmp_path / "grey.cpt", photos, tmp_path / "out", per_cluster=2, tile=16)
    estimator = IMCSwAVClustering.load(tmp_path / "grey.cpt")
    expected = estimator.predict(load_image_folder(photos, 8, channels=1).images)
    np.testing.assert_array_equal(prediction.clusters, expected)
    kept = [prediction.typical.images(k) for k in range(2)]
    assert all(k.shape[1:] == (8, 8, 1) and len(k) <= 2 for k in kept)
    assert prediction.next_clusters.tolist() == (1 - prediction.clusters).tolist()
    with Image.open(tmp_path / "out" / "clusters.png") as picture:
        assert picture.height == PADDING + int((prediction.cluster_sizes > 0).sum()) * (16 + PADDING)


# ---------------------------------------------------------------- the typical images and their picture

def test_typical_images_are_the_most_confident_whatever_the_batches():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (50, 4, 5, 3), dtype=np.uint8)
    clusters = rng.integers(0, 4, 50)
    confidence = rng.choice([0.3, 0.5, 0.7, 0.9], 50)  # many ties: the first seen wins
    paths = [f"{i}.png" for i in range(50)]
    results = []
    for cuts in ([50], [1] * 50, [7, 13, 30]):
        typical, start = TypicalImages(5, per_cluster=3), 0
        for size in cuts:
            part = slice(start, start + size)
            typical.update(images[part], clusters[part], confidence[part], paths[part])
            start += size
        results.append(typical)
    for cluster in range(5):
        members = np.flatnonzero(clusters == cluster)
        best = members[np.argsort(-confidence[members], kind="stable")[:3]]
        for typical in results:
            assert typical.counts[cluster] == len(members)
            assert typical.paths(cluster) == [paths[i] for i in best]
            np.testing.assert_array_equal(typical.images(cluster), images[best].reshape(-1, 4, 5, 3))
            np.testing.assert_array_equal(typical.confidence(cluster), confidence[best])
    assert results[0].images(4).shape == (0, 4, 5, 3)


@pytest.mark.parametrize("update, message", [
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.float32), [0, 1], [0.5, 0.5]), "uint8"),
    (lambda t: t.update(np.zeros((2, 4, 4, 2), np.uint8), [0, 1], [0.5, 0.5]), "uint8"),
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, 3], [0.5, 0.5]), r"ints in \[0, 3\)"),
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, -1], [0.5, 0.5]), r"ints in \[0, 3\)"),
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0.0, 1.0], [0.5, 0.5]), "ints"),
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0], [0.5, 0.5]), "one entry per image"),
    (lambda t: t.update(np.zeros((2, 4, 4, 3), np.uint8), [0, 1], [0.5, np.nan]), "finite"),
    (lambda t: t.update(np.zeros((1, 4, 4, 3), np.uint8), [0], [0.5], ["a", "b"]), "one entry per image"),
    (lambda t: [t.update(np.zeros((1, 4, 4, 3), np.uint8), [0], [0.5]),
                t.update(np.zeros((1, 5, 4, 3), np.uint8), [0], [0.5])], "earlier ones"),
])
def test_typical_images_refuse_bad_batches(update, message):
    with pytest.raises(ValueError, match=message):
        update(TypicalImages(3))


@pytest.mark.parametrize("arguments", [(0,), (3, 0), (True,), (2.5,)])
def test_typical_images_need_positive_counts(arguments):
    with pytest.raises(ValueError, match="positive int"):
        TypicalImages(*arguments)


def test_gallery_draws_one_row_per_non_empty_cluster_most_confident_first():
    colours = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0]], np.uint8)
    images = np.broadcast_to(colours[:, None, None], (3, 6, 10, 3))
    typical = TypicalImages(4, per_cluster=2)
    typical.update(images, [2, 0, 2], [0.4, 0.9, 0.8])  # cluster 2: green (0.8) before red (0.4)
    picture = np.asarray(gallery_image(typical, tile=20))
    assert picture.shape[0] == PADDING + 2 * (20 + PADDING)
    left = picture.shape[1] - 2 * (20 + PADDING)
    centre = lambda row, column: picture[PADDING + row * 24 + 10, left + column * 24 + 10]  # noqa: E731
    assert centre(0, 0).tolist() == [0, 0, 255] and centre(0, 1).tolist() == [255, 255, 255]
    assert centre(1, 0).tolist() == [0, 255, 0] and centre(1, 1).tolist() == [255, 0, 0]
    caption = picture[PADDING:PADDING + 20, PADDING:left - PADDING]
    assert (caption < 128).any()  # the cluster's index and size are written
    with pytest.raises(ValueError, match="No cluster holds an image"):
        gallery_image(TypicalImages(2))
    with pytest.raises(ValueError, match="tile must be a positive int"):
        gallery_image(typical, tile=0)


# ---------------------------------------------------------------- errors of the commands

def _predict(setup, *flags):
    checkpoint, photos, tmp = setup
    base = {"--cpt_load_path": checkpoint, "--path": photos, "--output_dir": tmp / "out", "--dev": "cpu"}
    base.update(dict(zip(flags[::2], flags[1::2])))
    return ["predict", *[item for key, value in base.items() if value is not None for item in (key, value)]]


def _train(setup, *flags):
    _, photos, tmp = setup
    return ["train", "--dataset", "folder", "--path", photos, *TINY, "--output_dir", tmp / "out", *flags]


def _folder(tmp: Path, name: str, files: dict[str, bytes | np.ndarray]) -> Path:
    for file, content in files.items():
        if isinstance(content, bytes):
            (tmp / name).mkdir(parents=True, exist_ok=True)
            (tmp / name / file).write_bytes(content)
        else:
            _save(tmp / name / file, content)
    (tmp / name).mkdir(exist_ok=True)
    return tmp / name


def _vector_checkpoint(tmp: Path, tiny) -> Path:
    X = np.random.default_rng(0).normal(size=(30, 6))
    tiny(n_clusters=2).fit(X).save(tmp / "vectors.cpt")
    return tmp / "vectors.cpt"


#: (name, argv builder (setup, tmp, tiny) -> argv, expected part of the one-line message)
ERRORS = [
    ("predict without --path", lambda s, t, tiny: _predict(s, "--path", None), "required: --path"),
    ("predict on a missing folder", lambda s, t, tiny: _predict(s, "--path", t / "none"), "none not found"),
    ("predict on a file", lambda s, t, tiny: _predict(s, "--path", s[0]), "not found (or not a folder)"),
    ("predict on an empty folder", lambda s, t, tiny: _predict(s, "--path", _folder(t, "empty", {})),
     "No image files under"),
    ("predict on no readable image",
     lambda s, t, tiny: _predict(s, "--path", _folder(t, "bad", {"a.png": b"x", "b.jpg": b""})),
     "None of the 2 image files"),
    ("predict from a missing checkpoint", lambda s, t, tiny: _predict(s, "--cpt_load_path", t / "none.cpt"),
     "none.cpt"),
    ("predict from a corrupt checkpoint",
     lambda s, t, tiny: _predict(s, "--cpt_load_path", _folder(t, "c", {"bad.cpt": b"junk"}) / "bad.cpt"),
     "bad.cpt"),
    ("predict with a model of vectors",
     lambda s, t, tiny: _predict(s, "--cpt_load_path", _vector_checkpoint(t, tiny)), "feature vectors"),
    ("predict into a file", lambda s, t, tiny: _predict(s, "--output_dir", s[0]),
     "Cannot create the output folder"),
    ("predict under a file", lambda s, t, tiny: _predict(s, "--output_dir", s[0] / "out"),
     "Cannot create the output folder"),
    ("predict with batch_size 0", lambda s, t, tiny: _predict(s, "--batch_size", 0), "--batch_size must be"),
    ("predict with batch_size abc", lambda s, t, tiny: _predict(s, "--batch_size", "abc"),
     "invalid int value"),
    ("predict on an unknown device", lambda s, t, tiny: _predict(s, "--dev", "tpu"), "--dev must be"),
    ("train without --n_clusters", lambda s, t, tiny: _train(s, "--image_size", 16), "--n_clusters K"),
    ("train with --image_size 0", lambda s, t, tiny: _train(s, "--image_size", 0), "--image_size takes"),
    ("train with three sides", lambda s, t, tiny: _train(s, "--image_size", 8, 8, 8), "--image_size takes"),
    ("train with --image_size x", lambda s, t, tiny: _train(s, "--image_size", "x"), "invalid int value"),
    ("train on mixed sizes", lambda s, t, tiny: _train(s, "--n_clusters", 2), "--image_size"),
    ("train on digits with --image_size",
     lambda s, t, tiny: ["train", "--dataset", "digits", *TINY, "--image_size", 8],
     "applies to 'folder' only"),
    ("test on an unlabelled folder",
     lambda s, t, tiny: ["test", "--dataset", "folder", "--path", s[1], "--image_size", 16, "--cpt_load_path",
                         s[0], "--dev", "cpu"], "no labels to score"),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=n) for n, b, e in ERRORS])
def test_errors_are_one_line_and_status_2(build, expected, trained, photos, tmp_path, tiny):
    status, _, err = run(build((trained[0], photos, tmp_path), tmp_path, tiny))
    assert status == 2, err
    assert err.startswith("imc-cluster: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err, err


def test_progress_bar_only_on_a_terminal(trained, photos, tmp_path, monkeypatch, capsys):
    for terminal, quiet in ((False, False), (True, True), (True, False)):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
        flags = ["--quiet"] if quiet else []
        assert main(["predict", "--cpt_load_path", str(trained[0]), "--path", str(photos), "--output_dir",
                     str(tmp_path / "out"), *flags]) == 0
        err = capsys.readouterr().err
        assert ("13/13" in err) == (terminal and not quiet), err


def test_a_prediction_into_its_own_folder_never_reads_its_picture(trained, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    first = predict_folder(trained[0], folder, folder)
    second = predict_folder(trained[0], folder, folder)  # clusters.png is now in the folder
    assert first.n_files == second.n_files == 13 and second.paths == first.paths
    assert "clusters.png" not in second.paths


def test_file_names_that_are_not_utf8_go_through_the_csv_as_their_bytes(trained, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    odd = os.fsdecode(b"caf\xe9, \"quoted\".png")  # Latin-1 bytes, a comma and quotes
    (folder / "photo01.png").rename(folder / odd)
    prediction = predict_folder(trained[0], folder, tmp_path / "out")
    assert odd in prediction.paths
    with open(tmp_path / "out" / "clusters.csv", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == prediction.paths
    assert (folder / rows[[row["path"] for row in rows].index(odd)]["path"]).is_file()


@pytest.mark.parametrize("size, crops", [(("3", "24"), ("3", "2")), (("1", "24"), ("1", "1")),
                                         (("24", "3"), ("3", "2"))])
def test_image_sides_of_one_or_three_pixels_are_not_taken_for_channels(photos, tmp_path, size, crops):
    status, _, err = run(["train", "--dataset", "folder", "--path", photos, "--image_size", *size,
                          "--n_clusters", CLUSTERS, *TINY, "--size_crops", *crops, "--output_dir", tmp_path])
    assert status == 0, err
    assert IMCSwAVClustering.load(tmp_path / "model.cpt").input_shape_ == (3, int(size[0]), int(size[1]))
