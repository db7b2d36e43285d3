"""Folders of your own images: finding the files, the class-folder rule, sizes, formats, modes, unreadable
files, and reading a folder in batches."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc_cluster import iter_image_batches, load_image_folder
from imc_cluster.data.datasets import load_dataset
from imc_cluster.data.decoding import DatasetNotFoundError
from imc_cluster.data.folders import SkippedImagesWarning, find_image_files, image_extensions


def _corrupt(file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))


# ---------------------------------------------------------------- layouts and the labelled rule


def test_flat_folder_is_unlabelled_in_sorted_order(tmp_path, save_image, noise):
    images = {
        name: save_image(tmp_path / name, noise((6, 7, 3), seed))
        for seed, name in enumerate(["b.png", "a.png", "c10.png", "c9.png"])
    }
    data = load_image_folder(tmp_path)
    assert data.paths == ["a.png", "b.png", "c10.png", "c9.png"]
    assert data.labels is None and data.classes == [] and data.failures == []
    assert data.root == str(tmp_path.resolve())
    np.testing.assert_array_equal(data.images, np.stack([images[name] for name in data.paths]))


def test_nested_folder_is_found_recursively(tmp_path, save_image, noise):
    for name in ["x/2.png", "x/deep/er/1.png", "x/1.png", "x/deep/0.png"]:
        save_image(tmp_path / name, noise((4, 4, 3)))
    data = load_image_folder(tmp_path)
    assert data.paths == ["x/1.png", "x/2.png", "x/deep/0.png", "x/deep/er/1.png"]
    assert data.labels is None  # one top-level folder: not a class tree


#: layout -> (labels option, expected classes or None)
LAYOUTS = {
    "two_class_folders": (["cat/1.png", "cat/sub/2.png", "ant/1.png"], "auto", ["ant", "cat"]),
    "one_folder": (["cat/1.png", "cat/2.png"], "auto", None),
    "loose_file_at_top": (["cat/1.png", "ant/1.png", "top.png"], "auto", None),
    "forced_one_folder": (["cat/1.png", "cat/2.png"], "folders", ["cat"]),
    "ignored_classes": (["cat/1.png", "ant/1.png"], None, None),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_labelled_rule(tmp_path, layout, save_image, noise):
    files, labels, classes = LAYOUTS[layout]
    for seed, name in enumerate(files):
        save_image(tmp_path / name, noise((4, 4, 3), seed))
    data = load_image_folder(tmp_path, labels=labels)
    assert data.classes == (classes or [])
    if classes is None:
        assert data.labels is None
    else:
        np.testing.assert_array_equal(data.labels, [classes.index(path.split("/")[0]) for path in data.paths])
    if labels == "auto":  # the rule of the "folder" data set
        dataset = load_dataset("folder", tmp_path)
        assert dataset.classes == data.classes
        expected = np.full(len(files), -1) if classes is None else data.labels
        np.testing.assert_array_equal(dataset.train_labels, expected)


def test_forced_folder_labels_refuse_loose_files(tmp_path, save_image, noise):
    save_image(tmp_path / "cat" / "1.png", noise((4, 4, 3)))
    save_image(tmp_path / "loose.png", noise((4, 4, 3)))
    with pytest.raises(ValueError, match="1 lie directly in it"):
        load_image_folder(tmp_path, labels="folders")


def test_hidden_files_folders_and_other_files_are_skipped(tmp_path, save_image, noise):
    kept = save_image(tmp_path / "a.png", noise((4, 4, 3)))
    _corrupt(tmp_path / ".hidden.png")
    _corrupt(tmp_path / "._a.png")  # macOS resource fork
    _corrupt(tmp_path / ".thumbs" / "b.png")
    _corrupt(tmp_path / ".imc_cluster_cache" / "c.png")  # the cache of imc-cluster 0.3 and earlier
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image
    for _ in range(2):  # the second read comes from the cache
        data = load_image_folder(tmp_path)
        assert data.paths == ["a.png"]
        np.testing.assert_array_equal(data.images[0], kept)


def test_symbolic_link_cycles_end_and_each_folder_is_read_once(tmp_path, save_image, noise):
    save_image(tmp_path / "a" / "1.png", noise((4, 4, 3)))
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")
    assert find_image_files(tmp_path) == ["a/1.png"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_image_folder(tmp_path / "nothing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_image_folder(tmp_path / "file.png")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(DatasetNotFoundError, match="No image files under"):
        load_image_folder(tmp_path / "empty")


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(image_size=0), "image_size must be"),
        (dict(image_size=-3), "image_size must be"),
        (dict(image_size=(8, 8, 3)), "image_size must be"),
        (dict(image_size="8"), "image_size must be"),
        (dict(image_size=2.5), "image_size must be"),
        (dict(image_size=True), "image_size must be"),
        (dict(image_size=(8, 0)), "image_size must be"),
        (dict(labels="yes"), "labels must be"),
        (dict(channels=2), "channels must be"),
        (dict(channels=True), "channels must be"),
        (dict(on_error="ignore"), "on_error must be"),
    ],
)
def test_bad_options_are_named(tmp_path, options, message, save_image, noise):
    save_image(tmp_path / "a.png", noise((4, 4, 3)))
    with pytest.raises(ValueError, match=message):
        load_image_folder(tmp_path, **options)


def test_only_regular_files_are_images(tmp_path, save_image, noise):
    """A dangling link and a named pipe with an image's extension are left out (reading a pipe would wait
    forever); a link to an image file counts."""
    save_image(tmp_path / "a.png", noise((8, 8, 3)))
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    os.mkfifo(tmp_path / "pipe.png")
    assert find_image_files(tmp_path) == ["a.png", "link.png"]
    data = load_image_folder(tmp_path, on_error="skip")
    assert data.paths == ["a.png", "link.png"] and not data.failures


# ---------------------------------------------------------------- sizes


def test_mixed_sizes_need_image_size(tmp_path, save_image, noise):
    save_image(tmp_path / "a.png", noise((10, 12, 3)))
    save_image(tmp_path / "b.png", noise((8, 8, 3)))
    with pytest.raises(ValueError, match=r"a\.png is 10x12 but .*b\.png is 8x8.*image_size="):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="--image_size"):
        load_dataset("folder", tmp_path)
    assert load_image_folder(tmp_path, 6).images.shape == (2, 6, 6, 3)
    assert load_image_folder(tmp_path, (5, 9)).images.shape == (2, 5, 9, 3)
    assert load_dataset("folder", tmp_path, image_size=[4, 7]).train_images.shape == (2, 4, 7, 3)


def _bands(height: int, width: int, axis: int) -> np.ndarray:
    """Red, green and blue bands of equal size along ``axis`` (1: left to right, 0: top to bottom)."""
    image = np.zeros((height, width, 3), np.uint8)
    third = image.shape[axis] // 3
    for band in range(3):
        index = [slice(None)] * 2
        index[axis] = slice(band * third, (band + 1) * third)
        image[(*index, band)] = 255
    return image


@pytest.mark.parametrize(
    "shape, axis, size",
    [((16, 48), 1, 8), ((48, 16), 0, 8), ((10, 60), 1, (5, 10)), ((30, 30), 0, (10, 30)), ((12, 36), 1, 32)],
)
def test_image_size_keeps_the_aspect_by_a_centre_crop(tmp_path, shape, axis, size, save_image):
    """The outer bands are cut off whole: the result is the middle (green) band only, down- or upscaled."""
    save_image(tmp_path / "bands.png", _bands(*shape, axis))
    image = load_image_folder(tmp_path, size).images[0]
    side = (size, size) if isinstance(size, int) else size
    assert image.shape == (*side, 3)
    np.testing.assert_array_equal(image, np.broadcast_to(np.array([0, 255, 0], np.uint8), image.shape))


# ---------------------------------------------------------------- formats and modes


#: format -> (file name, save options, whether the pixels come back exactly)
JPEG = {"quality": 95, "subsampling": 0}


FORMATS = {
    "png": ("a.png", {}, True),
    "jpeg": ("a.JPG", JPEG, False),
    "bmp": ("a.bmp", {}, True),
    "gif": ("a.gif", {}, False),
    "tiff": ("a.TIFF", {}, True),
    "webp": ("a.webp", {"lossless": True}, True),
    "jpeg_upper": ("a.JpEg", JPEG, False),
    "ppm": ("a.ppm", {}, True),
}


@pytest.mark.parametrize("image_format", FORMATS)
def test_every_common_format_is_found_and_decoded(tmp_path, image_format, save_image, noise):
    name, options, exact = FORMATS[image_format]
    image = np.repeat(np.repeat(noise((4, 4, 3)), 4, axis=0), 4, axis=1)  # blocks survive JPEG fairly well
    save_image(tmp_path / name, image, **options)
    data = load_image_folder(tmp_path)
    assert data.paths == [name] and data.images.shape == (1, 16, 16, 3)
    with Image.open(tmp_path / name) as reopened:
        decoded = np.asarray(reopened.convert("RGB"))
    np.testing.assert_array_equal(data.images[0], image if exact else decoded)
    if not exact and image_format != "gif":
        assert np.abs(data.images[0].astype(int) - image).mean() < 12


def test_extensions_are_the_formats_pil_decodes():
    extensions = image_extensions()
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".mpo"} <= extensions
    assert not {".pdf", ".h5", ".mpg", ".txt", ".grib"} & extensions
    assert all(ext == ext.lower() and ext.startswith(".") for ext in extensions)


#: the PIL modes of :func:`_modes`, one image each
MODES = ["L", "1", "LA", "I;16", "RGB", "RGBA", "P"]


def _modes(noise) -> dict:
    """Mode -> (an image of random pixels in that mode, the pixels expected of a grey mode or None)."""
    grey = noise((6, 6))
    wide = (grey.astype(np.uint16) * 257).astype("<u2")
    return {
        "L": (Image.fromarray(grey), grey[..., None]),
        "1": (Image.fromarray(grey).convert("1"), None),
        "LA": (Image.fromarray(np.stack([grey, 255 - grey], axis=2), "LA"), grey[..., None]),
        "I;16": (Image.frombytes("I;16", (6, 6), wide.tobytes()), grey[..., None]),
        "RGB": (Image.fromarray(noise((6, 6, 3))), None),
        "RGBA": (Image.fromarray(noise((6, 6, 4))), None),
        "P": (Image.fromarray(noise((6, 6, 3))).convert("P"), None),
    }


@pytest.mark.parametrize("mode", MODES)
def test_colour_modes(tmp_path, mode, noise):
    """Grey modes give one channel (16 bits scaled down), the others RGB with alpha dropped; channels=1
    and 3 force grey (PIL's luma) and RGB."""
    image, expected = _modes(noise)[mode]
    image.save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as reopened:
        assert reopened.mode == mode
        rgb = np.asarray(reopened.convert("RGB")) if mode not in ("I;16",) else None
    data = load_image_folder(tmp_path)
    grey_mode = mode in ("L", "1", "LA", "I;16")
    assert data.images.shape == (1, 6, 6, 1 if grey_mode else 3)
    if expected is not None:
        np.testing.assert_array_equal(data.images[0], expected)
    elif not grey_mode:
        np.testing.assert_array_equal(data.images[0], rgb)
    forced_rgb = load_image_folder(tmp_path, channels=3).images[0]
    expected_rgb = np.broadcast_to(data.images[0], (6, 6, 3)) if grey_mode else rgb
    np.testing.assert_array_equal(forced_rgb, expected_rgb)
    forced_grey = load_image_folder(tmp_path, channels=1).images[0]
    luma = data.images[0] if grey_mode else np.asarray(Image.fromarray(rgb).convert("L"))[..., None]
    np.testing.assert_array_equal(forced_grey, luma)


def test_grey_among_colour_gives_rgb(tmp_path, save_image, noise):
    grey = save_image(tmp_path / "a.png", noise((5, 5, 1)))
    colour = save_image(tmp_path / "b.png", noise((5, 5, 3), 1))
    np.testing.assert_array_equal(
        load_image_folder(tmp_path).images, np.stack([np.repeat(grey, 3, axis=2), colour])
    )


def test_photos_are_read_upright_by_their_exif_orientation(tmp_path):
    """Orientation 6 (the camera turned 90 degrees clockwise): viewers show the stored 16x32 image as
    32x16, rotated; so does the loader."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, 16:] = 255  # the right half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image_folder(tmp_path).images[0]
    assert image.shape == (32, 16, 3)
    assert image[:14].mean() < 20 and image[18:].mean() > 235  # the white half now at the bottom


def test_file_names_that_are_not_utf8_are_read(tmp_path, save_image, noise):
    name = os.fsdecode(b"\xff\xfe photo.png")  # a Linux file name of undecodable bytes
    save_image(tmp_path / name, noise((8, 8, 3)))
    save_image(tmp_path / "ok.png", noise((8, 8, 3), seed=1))
    data = load_dataset("folder", tmp_path)  # through the cache, whose key hashes the names
    assert data.train_images.shape == (2, 8, 8, 3)
    assert load_image_folder(tmp_path).paths == sorted([name, "ok.png"], key=lambda path: path.split("/"))


# ---------------------------------------------------------------- unreadable files


@pytest.mark.parametrize("content", [b"", b"plain text", b"\x89PNG\r\n\x1a\n" + bytes(100), "truncated"])
def test_unreadable_files_raise_or_are_skipped(tmp_path, content, save_image, noise):
    for name in ("cat/1.png", "cat/3.png", "dog/1.png"):
        save_image(tmp_path / name, noise((8, 8, 3)))
    good = (tmp_path / "cat" / "1.png").read_bytes()
    (tmp_path / "cat" / "2.png").write_bytes(good[: len(good) // 2] if content == "truncated" else content)
    with pytest.raises(ValueError, match=r"Cannot decode the image file .*cat/2\.png"):
        load_image_folder(tmp_path, on_error="raise")
    for _ in range(2):  # the second read comes from the cache, failures included
        with pytest.warns(SkippedImagesWarning, match=r"Skipped 1 image file\(s\) .*cat/2\.png"):
            data = load_image_folder(tmp_path)
        assert data.paths == ["cat/1.png", "cat/3.png", "dog/1.png"] and len(data.images) == 3
        np.testing.assert_array_equal(data.labels, [0, 0, 1])
        assert [failure.path for failure in data.failures] == ["cat/2.png"]
        assert "cat/2.png" in data.failures[0].error
    with pytest.raises(ValueError, match=r"cat/2\.png"):  # a cached failure still raises
        load_image_folder(tmp_path, on_error="raise")


def test_first_file_unreadable_and_all_unreadable(tmp_path, save_image, noise):
    _corrupt(tmp_path / "a.png")
    save_image(tmp_path / "b.png", noise((4, 4, 1)))
    with pytest.warns(SkippedImagesWarning, match="a.png"):
        data = load_image_folder(tmp_path)
    assert data.paths == ["b.png"] and data.images.shape == (1, 4, 4, 1)
    (tmp_path / "b.png").write_bytes(b"broken too")
    with pytest.raises(ValueError, match="None of the 2 image files"):
        load_image_folder(tmp_path)


def test_image_over_the_pixel_limit_is_skipped_with_its_reason(tmp_path, monkeypatch, save_image, noise):
    save_image(tmp_path / "a.png", noise((4, 4, 3)))
    save_image(tmp_path / "b.png", noise((40, 40, 3)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path, 4)
    assert data.paths == ["a.png"] and "pixel limit" in data.failures[0].error
    assert [warning.category for warning in caught] == [SkippedImagesWarning]  # and no warning of PIL's


def test_unreadable_files_are_named_in_one_warning(tmp_path, save_image, noise):
    """A truncated JPEG, a text file named .png and an empty file: left out, named in one warning."""
    save_image(tmp_path / "good.png", noise((8, 8, 3)))
    save_image(tmp_path / "photo.jpg", noise((32, 32, 3)), quality=90)
    jpeg = (tmp_path / "photo.jpg").read_bytes()
    (tmp_path / "photo.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "notes.png").write_text("not an image but a text file")
    (tmp_path / "empty.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path)
    assert data.paths == ["good.png"]
    assert [failure.path for failure in data.failures] == ["empty.png", "notes.png", "photo.jpg"]
    (warning,) = caught
    assert warning.category is SkippedImagesWarning and warning.filename == __file__
    assert str(warning.message).startswith("Skipped 3 image file(s)")
    assert all(name in str(warning.message) for name in ("empty.png", "notes.png", "photo.jpg"))


def test_many_unreadable_files_are_counted_after_the_first_few(tmp_path, save_image, noise):
    save_image(tmp_path / "good.png", noise((8, 8, 3)))
    for index in range(8):
        _corrupt(tmp_path / f"bad{index}.png")
    with pytest.warns(
        SkippedImagesWarning, match=r"Skipped 8 image file.*bad4\.png: .*; and 3 more\)"
    ) as caught:
        load_image_folder(tmp_path)
    assert "bad5.png" not in str(caught[0].message)


# ---------------------------------------------------------------- batches


def test_batches_cover_the_folder_in_order_with_bounded_size(tmp_path, save_image, noise):
    for index in range(10):
        save_image(tmp_path / f"{index:02d}.png", noise((6 + index, 9, 3), index))
    _corrupt(tmp_path / "04.png")
    with pytest.warns(SkippedImagesWarning):
        whole = load_image_folder(tmp_path, (5, 7), channels=3)
    batches = list(iter_image_batches(tmp_path, 3, (5, 7)))
    assert [len(batch.paths) + len(batch.failures) for batch in batches] == [3, 3, 3, 1]
    assert all(batch.images.shape[1:] == (5, 7, 3) for batch in batches)
    assert all(len(batch.images) == len(batch.paths) for batch in batches)
    assert [path for batch in batches for path in batch.paths] == whole.paths
    np.testing.assert_array_equal(np.concatenate([batch.images for batch in batches]), whole.images)
    assert [failure.path for failure in batches[1].failures] == ["04.png"]
    grey = next(iter_image_batches(tmp_path, 2, 4, channels=1))
    assert grey.images.shape == (2, 4, 4, 1)


def test_batches_of_mixed_sizes_without_image_size_fail(tmp_path, save_image, noise):
    save_image(tmp_path / "a.png", noise((4, 4, 3)))
    save_image(tmp_path / "b.png", noise((5, 5, 3)))
    with pytest.raises(ValueError, match="Images differ in size"):
        list(iter_image_batches(tmp_path, 1))
    with pytest.raises(ValueError, match="Images differ in size"):
        list(iter_image_batches(tmp_path, 2))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2.0), "batch_size"),
        (dict(channels=None), "channels must be 1 or 3"),
        (dict(on_error="warn"), "on_error"),
    ],
)
def test_bad_batch_options(tmp_path, options, message, save_image, noise):
    save_image(tmp_path / "a.png", noise((4, 4, 3)))
    with pytest.raises(ValueError, match=message):
        next(iter_image_batches(tmp_path, **options))
