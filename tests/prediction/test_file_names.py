"""Files and names: every file name the file system allows round-trips through clusters.csv (read back
with the csv module); photos with an EXIF rotation decode at the right scale for any target size; a class
folder whose files are all unreadable is no class; the outputs of a run are replaced together or not at
all."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from imc_cluster import IMCSwAVClustering, load_image_folder, predict_folder
from imc_cluster.data import decoding

NAMES = [
    "comma,name.png",
    'quote"d.png',
    "new\nline.png",
    "carriage\rreturn.png",
    "both\r\n.png",
    "tab\tname.png",
    " leading space.png",
    "semi;colon.png",
    "unicode é 🖼.png",
    "'single'.png",
    "plain.png",
    "a\\b.png",
]


@pytest.fixture(scope="module")
def model():
    images = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    return IMCSwAVClustering(
        3,
        backbone_width=4,
        n_prototypes=10,
        projection_dim=8,
        head_hidden_dim=16,
        batch_size=12,
        max_epochs=1,
        warmup_updates=1,
        random_state=0,
    ).fit(images)


def write_photos(save_photo, folder, names, seed=0):
    """Random 8x8 RGB photos named ``names`` in ``folder``."""
    rng = np.random.default_rng(seed)
    for name in names:
        save_photo(folder / name, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def read_rows(path):
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.reader(handle))


def test_every_file_name_round_trips_through_the_csv(model, tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub,dir\nx").mkdir(parents=True)
    rng = np.random.default_rng(1)
    expected = []
    for name in [*NAMES, "sub,dir\nx/inner\r.png"]:
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / name)
        expected.append(name)
    raw = os.fsencode(folder) + b"/latin\xe9\xff.png"  # not UTF-8
    with open(raw, "wb") as handle:
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(handle, format="PNG")
    expected.append(os.fsdecode(b"latin\xe9\xff.png"))
    predict_folder(model, folder, tmp_path / "out", copy_to=tmp_path / "sorted")
    rows = read_rows(tmp_path / "out" / "clusters.csv")
    assert rows[0] == [
        "path",
        "cluster",
        "confidence",
        "next_cluster",
        "next_confidence",
        "uncertain",
        "placed_as",
    ]
    assert sorted(row[0] for row in rows[1:]) == sorted(expected)
    assert all(len(row) == 7 for row in rows)
    for row in rows[1:]:  # every path names its file, and its copy has its name and bytes
        original = os.fsencode(folder) + b"/" + os.fsencode(row[0])
        copy = os.fsencode(tmp_path / "sorted") + b"/" + os.fsencode(row[6])
        assert os.path.basename(copy) == os.path.basename(original)
        assert open(copy, "rb").read() == open(original, "rb").read()  # noqa: SIM115


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [(16, 16), (40, 12), (12, 40), (5, 7)])
def test_exif_rotated_photos_decode_at_the_right_scale(tmp_path, monkeypatch, orientation, size):
    """A JPEG decodes at a reduced scale that still covers the target once the photo is upright: the image
    handed to the resize is at least the target size on both axes, and upright."""
    stored = np.zeros((120, 360, 3), np.uint8)  # stored 120 high, 360 wide; a white mark at the top left
    stored[:20, :60] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif, quality=95)
    seen = []
    fit = decoding.fit_to_size

    def recording(array, target):
        seen.append(array.shape[:2])
        return fit(array, target)

    monkeypatch.setattr(decoding, "fit_to_size", recording)
    out = decoding.decode_file(path, size=size)
    assert out.shape[:2] == size
    upright = (360, 120) if orientation in (5, 6, 7, 8) else (120, 360)
    height, width = seen[0]
    assert height >= size[0] and width >= size[1], (seen, size)
    assert height / width == pytest.approx(upright[0] / upright[1], rel=0.05)


def test_a_class_folder_of_unreadable_files_is_no_class(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png"
            )
    (tmp_path / "broken").mkdir()
    for i in range(2):
        (tmp_path / "broken" / f"{i}.png").write_bytes(b"not an image")
    data = load_image_folder(tmp_path, on_error="skip")
    assert data.classes == ["cats", "dogs"]
    assert sorted(set(data.labels.tolist())) == [0, 1]
    assert sorted(f.path for f in data.failures) == ["broken/0.png", "broken/1.png"]


@pytest.fixture
def earlier_run(model, tmp_path, save_photo):
    """``(photos, out)``: a folder predicted into ``out``, then given one more photo."""
    photos, out = tmp_path / "photos", tmp_path / "out"
    write_photos(save_photo, photos, [f"{i}.png" for i in range(3)])
    predict_folder(model, photos, out)
    write_photos(save_photo, photos, ["new.png"], seed=1)
    return photos, out


def outputs(out) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in os.listdir(out) if (out / name).is_file()}


def test_the_three_outputs_are_replaced_together_or_not_at_all(model, earlier_run, monkeypatch):
    photos, out = earlier_run
    before = outputs(out)
    assert sorted(before) == ["clusters.csv", "clusters.png", "summary.json"]
    with pytest.raises(ValueError, match="tile"):
        predict_folder(model, photos, out, tile=0)
    with pytest.raises(ValueError, match="batch_size"):
        predict_folder(model, photos, out, batch_size=0)

    def failing_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", failing_dump)  # the last of the three files fails mid-write
    with pytest.raises(OSError, match="disk full"):
        predict_folder(model, photos, out)
    assert outputs(out) == before
    assert sorted(os.listdir(out)) == sorted(before)  # no temporary file left


@pytest.mark.parametrize("blocked", ["summary.json", "clusters.png", "clusters.csv"])
def test_an_output_blocked_by_a_folder_is_refused_before_anything_is_written(model, earlier_run, blocked):
    photos, out = earlier_run
    (out / blocked).unlink()
    (out / blocked).mkdir()
    before = outputs(out)
    with pytest.raises(OSError, match=f"{blocked}: it is a directory"):
        predict_folder(model, photos, out)
    assert outputs(out) == before
    assert sorted(os.listdir(out)) == sorted([*before, blocked])


def test_a_tile_too_large_for_a_picture_is_refused(model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    for tile in (1025, 10**6):
        with pytest.raises(ValueError, match="tile must be at most 1024"):
            predict_folder(model, folder, tmp_path / "out", tile=tile)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_a_tree_left_with_one_readable_class_is_unlabelled(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "a" / f"{i}.png")
        (tmp_path / "b" / f"{i}.png").write_bytes(b"garbage")
    data = load_image_folder(tmp_path, on_error="skip")
    assert data.labels is None and data.classes == []
    assert len(data.failures) == 3
