"""Image files decoded: damaged files and files over PIL's pixel limit named and left out, wide grey modes
scaled by their range, JPEG files decoded at a reduced scale, resizing, and the cache of decoded trees."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from imc_cluster import load_image_folder
from imc_cluster.data import decoding as imagefiles
from imc_cluster.data.datasets import load_dataset
from imc_cluster.data.decoding import fit_to_size
from imc_cluster.data.folders import SkippedImagesWarning

# ---------------------------------------------------------------- damaged and oversized files


def _damaged(good: bytes, damage: str) -> bytes:
    """The bytes of a good image file, damaged: the header kept and the rest random ("corrupt"), cut in
    half or before its last two bytes (a JPEG's end marker), empty, or text."""
    random = np.random.default_rng(0).integers(0, 256, len(good) - 100, dtype=np.uint8).tobytes()
    return {
        "corrupt": good[:100] + random,
        "truncated": good[: len(good) // 2],
        "tail_cut": good[:-2],
        "empty": b"",
        "text": b"not an image at all\n",
    }[damage]


@pytest.mark.parametrize("first", [True, False], ids=["first_file", "on_thread_pool"])
@pytest.mark.parametrize(
    "suffix, damage",
    [
        (".png", "corrupt"),
        (".jpg", "corrupt"),
        (".png", "truncated"),
        (".jpg", "truncated"),
        (".jpg", "tail_cut"),
        (".png", "empty"),
        (".png", "text"),
    ],
)
def test_undecodable_image_file_is_named_and_left_out(tmp_path, suffix, damage, first, save_image, noise):
    """The first file is decoded on the calling thread, the others on the thread pool; the good one stays."""
    save_image(tmp_path / "a" / f"b_good{suffix}", noise((32, 32, 3)))
    name = f"{'a' if first else 'c'}_{damage}{suffix}"
    (tmp_path / "a" / name).write_bytes(_damaged((tmp_path / "a" / f"b_good{suffix}").read_bytes(), damage))
    with pytest.warns(
        SkippedImagesWarning, match=f"Skipped 1 image file.*Cannot decode the image file .*{name}"
    ):
        data = load_dataset("folder", tmp_path)
    assert data.train_images.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(
        data.train_images[0], np.asarray(Image.open(tmp_path / "a" / f"b_good{suffix}"))
    )


@pytest.mark.parametrize("action", ["ignore", "error"])
@pytest.mark.parametrize("limit", [600, 400], ids=["warning_size", "error_size"])
def test_image_over_the_pixel_limit_is_named(tmp_path, monkeypatch, limit, action, save_image):
    """PIL warns over Image.MAX_IMAGE_PIXELS and raises over twice that; both leave the file out with a
    warning naming it, whatever the warning filter. The 32x32 image is decoded on the thread pool, after an
    8x8 one."""
    save_image(tmp_path / "a" / "a_small.png", np.zeros((8, 8, 1), np.uint8))
    save_image(tmp_path / "a" / "b_big.png", np.zeros((32, 32, 1), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with (
        warnings.catch_warnings(),
        pytest.warns(SkippedImagesWarning, match=r"b_big\.png exceeds PIL's pixel limit"),
    ):
        warnings.simplefilter(action, Image.DecompressionBombWarning)
        data = load_dataset("folder", tmp_path)
    assert data.train_images.shape == (1, 8, 8, 1)
    assert limit == Image.MAX_IMAGE_PIXELS


# ---------------------------------------------------------------- wide grey modes


def _frombytes(mode: str, values: np.ndarray) -> Image.Image:
    """A one-row image of ``values`` in PIL ``mode``, from their raw bytes."""
    return Image.frombytes(mode, (values.shape[1], values.shape[0]), values.tobytes())


#: 16-bit and 32-bit integer values and their uint8 scale, value * 255 / 65535 rounded
WIDE_INTEGERS = np.array([[0, 32768, 65535, 1000, 257]]), np.array([[0, 128, 255, 4, 1]])


#: 32-bit integers beyond 0..65535, scaled over their own min..max
INTEGERS_BEYOND = np.array([[0, 100000, 50000, 1000, 131070]]), np.array([[0, 195, 97, 2, 255]])


#: float values within [0, 1] (times 255), other float values (over their min..max, -1..3), and their scales
FLOATS_WITHIN = np.array([[0.0, 0.5, 1.0, 0.25, 0.1]]), np.array([[0, 128, 255, 64, 26]])


FLOATS_BEYOND = np.array([[-1.0, 0.0, 3.0, 1.0, -0.5]]), np.array([[0, 64, 255, 128, 32]])


@pytest.mark.parametrize(
    "file, mode, image, expected",
    [
        ("a.png", "I;16", _frombytes("I;16", WIDE_INTEGERS[0].astype("<u2")), WIDE_INTEGERS[1]),
        ("a.tif", "I;16B", _frombytes("I;16B", WIDE_INTEGERS[0].astype(">u2")), WIDE_INTEGERS[1]),
        ("a.tif", "I", _frombytes("I", WIDE_INTEGERS[0].astype("<i4")), WIDE_INTEGERS[1]),
        ("a.tif", "I", _frombytes("I", INTEGERS_BEYOND[0].astype("<i4")), INTEGERS_BEYOND[1]),
        ("a.tif", "F", _frombytes("F", FLOATS_WITHIN[0].astype("<f4")), FLOATS_WITHIN[1]),
        ("a.tif", "F", _frombytes("F", FLOATS_BEYOND[0].astype("<f4")), FLOATS_BEYOND[1]),
    ],
    ids=[
        "png_16bit",
        "tiff_16bit_big_endian",
        "tiff_32bit_int",
        "tiff_32bit_int_beyond_16bit",
        "tiff_float_within_0_1",
        "tiff_float_beyond",
    ],
)
def test_wide_grey_images_are_scaled_by_their_range(tmp_path, file, mode, image, expected):
    (tmp_path / "x").mkdir()
    image.save(tmp_path / "x" / file)
    with Image.open(tmp_path / "x" / file) as reopened:
        assert reopened.mode == mode
    data = load_dataset("folder", tmp_path)
    assert data.train_images.shape == (1, 1, 5, 1)
    np.testing.assert_array_equal(data.train_images[0, ..., 0], expected)
    rgb = imagefiles.decode_file(tmp_path / "x" / file, channels=3)
    np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))


def test_16bit_image_of_low_values_is_not_saturated(tmp_path):
    values = np.linspace(0, 1000, 16, dtype=np.uint16).reshape(4, 4)
    _frombytes("I;16", values.astype("<u2")).save(tmp_path / "low.png")
    array = imagefiles.decode_file(tmp_path / "low.png")
    np.testing.assert_array_equal(array[..., 0], np.rint(values / 257))  # 65535 / 255 = 257
    assert array.max() == 4


# ---------------------------------------------------------------- sizes


def test_resize_keeps_the_picture_in_place():
    image = np.zeros((40, 40, 1), np.uint8)
    image[:, 20:] = 255  # left half black, right half white
    small = fit_to_size(image, (10, 10))[..., 0]
    assert small.shape == (10, 10) and (small[:, :4] < 10).all() and (small[:, 6:] > 245).all()
    assert fit_to_size(image, (40, 40)) is image


def test_large_jpeg_decoded_at_a_reduced_scale_matches_a_full_decode(tmp_path, save_image):
    """JPEG files are decoded at the smallest sufficient scale (PIL's draft mode) when resized."""
    ramp = np.linspace(0, 255, 600)
    image = np.stack(
        [
            np.add.outer(ramp[:400] / 2, ramp / 2),
            np.tile(ramp, (400, 1)),
            np.tile(ramp[:400, None], (1, 600)),
        ],
        axis=2,
    ).astype(np.uint8)
    save_image(tmp_path / "big.jpg", image, quality=95)
    drafted = imagefiles.decode_file(tmp_path / "big.jpg", size=(16, 16)).astype(float)
    full = fit_to_size(imagefiles.decode_file(tmp_path / "big.jpg"), (16, 16)).astype(float)
    assert drafted.shape == (16, 16, 3) and np.abs(drafted - full).mean() < 2.0


# ---------------------------------------------------------------- the cache


def _failing_decoder(*args, **kwargs):
    raise AssertionError("decoded instead of using the cache")


def test_cache_is_used_and_invalidated(tmp_path, monkeypatch, save_image, write_tree, user_cache):
    images, _ = write_tree(tmp_path, per_class=2)
    first = load_dataset("folder", tmp_path)
    decode = imagefiles.decode_images
    monkeypatch.setattr(imagefiles, "decode_images", _failing_decoder)
    np.testing.assert_array_equal(load_dataset("folder", tmp_path).train_images, first.train_images)

    file = tmp_path / "ant" / "00.png"
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("folder", tmp_path)
    monkeypatch.setattr(imagefiles, "decode_images", decode)
    load_dataset("folder", tmp_path)

    save_image(tmp_path / "ant" / "99.png", images[0])
    monkeypatch.setattr(imagefiles, "decode_images", _failing_decoder)
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("folder", tmp_path)
    monkeypatch.setattr(imagefiles, "decode_images", decode)
    assert len(load_dataset("folder", tmp_path).train_images) == 7
    (tree,) = (user_cache / "decoded").iterdir()  # one folder of this data folder's caches
    assert len(list(tree.iterdir())) == 1  # older caches removed, no temporary files left


def test_corrupt_cache_is_decoded_again(tmp_path, write_tree, user_cache):
    images, _ = write_tree(tmp_path, per_class=1)
    load_dataset("folder", tmp_path)
    (cache,) = user_cache.glob("decoded/*/*.npz")
    cache.write_bytes(b"not a zip file")
    np.testing.assert_array_equal(load_dataset("folder", tmp_path).train_images, images)


def test_unwritable_cache_folder_still_loads(tmp_path, monkeypatch, write_tree, user_cache):
    images, _ = write_tree(tmp_path, per_class=1)
    (user_cache / "decoded").write_text("a file where the cache folder would go")
    calls = []
    decode = imagefiles.decode_images
    monkeypatch.setattr(imagefiles, "decode_images", lambda *args: calls.append(1) or decode(*args))
    for _ in range(2):
        np.testing.assert_array_equal(load_dataset("folder", tmp_path).train_images, images)
    assert len(calls) == 2


def test_cache_is_keyed_by_size_and_channels(tmp_path, monkeypatch, save_image, noise, user_cache):
    save_image(tmp_path / "a.png", noise((12, 12, 3)))
    save_image(tmp_path / "b.png", noise((12, 16, 3), 1))
    small, large = load_image_folder(tmp_path, 6).images, load_image_folder(tmp_path, 9).images
    assert small.shape[1:3] == (6, 6) and large.shape[1:3] == (9, 9)

    def refuse(*args):
        raise AssertionError("decoded instead of read from the cache")

    grey = load_image_folder(tmp_path, 6, channels=1).images
    assert grey.shape == (2, 6, 6, 1)
    monkeypatch.setattr(imagefiles, "decode_images", refuse)
    np.testing.assert_array_equal(load_image_folder(tmp_path, 6, channels=1).images, grey)
    for size in (7, 6):  # other settings decode again (the cache keeps the latest settings of a folder)
        with pytest.raises(AssertionError, match="decoded"):
            load_image_folder(tmp_path, size)
    assert len(list(user_cache.glob("decoded/*/*"))) == 1


def _names(folder) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(top, name), folder)
        for top, dirs, files in os.walk(folder)
        for name in dirs + files
    )


def test_the_cache_is_in_the_user_cache_folder_one_per_data_folder(tmp_path, write_tree, user_cache):
    """Nothing is written into a data folder; a copy of a tree elsewhere has a cache of its own, the
    environment variable and the ``cache_dir`` argument move the cache."""
    for name in ("a", "b"):
        write_tree(tmp_path / name, per_class=1)
    listed = _names(tmp_path)
    load_dataset("folder", tmp_path / "a")
    load_image_folder(tmp_path / "b")
    assert _names(tmp_path) == listed
    assert sorted(path.name.split("-")[0] for path in (user_cache / "decoded").iterdir()) == ["a", "b"]
    assert (user_cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")

    load_image_folder(tmp_path / "a", cache_dir=tmp_path / "argument")
    load_dataset("folder", tmp_path / "b", cache_dir=tmp_path / "argument")
    assert len(list((tmp_path / "argument").glob("decoded/*/*.npz"))) == 2
    assert len(list(user_cache.glob("decoded/*/*.npz"))) == 2  # untouched by the argument


def test_a_bad_cache_dir_is_named(tmp_path, write_tree, monkeypatch):
    write_tree(tmp_path, per_class=1)
    with pytest.raises(ValueError, match="is a file"):
        load_image_folder(tmp_path, cache_dir=tmp_path / "cat" / "00.png")
    with pytest.raises(TypeError, match="cache_dir must be a folder path"):
        load_dataset("folder", tmp_path, cache_dir=3)
