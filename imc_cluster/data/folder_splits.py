"""The command line's ``folder`` data set: the training and test splits of an image folder, with the
class-folder rule and the skipped files reported once."""

from __future__ import annotations

import os
from pathlib import Path

from imc_cluster.data.decoding import (
    DatasetNotFoundError,
    ImageSize,
    check_image_size,
)
from imc_cluster.data.folders import (
    ImageFolderData,
    class_folders,
    find_image_files,
    folder_classes,
    read_folder,
    warn_skipped,
)

__all__ = ["load_folder_splits"]


def _check_test_classes(path: Path, classes: list[str], test_files: list[str]) -> None:
    tops, loose = class_folders(test_files)
    extra = sorted(set(tops) - set(classes))
    if extra or loose:
        found = (
            f"class folders that {path / 'train'} lacks, or whose files there cannot be decoded: "
            f"{', '.join(extra)}"
            if extra
            else f"{loose} image file(s) outside class folders"
        )
        raise ValueError(f"{path / 'test'} has {found}.")


def load_folder_splits(
    path: Path, image_size: ImageSize | None = None, *, cache_dir: str | os.PathLike | None = None
) -> tuple[ImageFolderData, ImageFolderData]:
    """The train and test splits of the ``folder`` data set under ``path``.

    ``path/train`` and ``path/test`` when both exist; else ``path/train`` alone or, without it, ``path``
    itself, which is then both splits (the same object). Labels follow the "auto" rule of
    :func:`load_image_folder` on the training tree; a labelled training tree labels the test tree by the
    same classes. Test images take the training images' channels; without ``image_size`` both splits
    must have one size. A file that cannot be decoded (damaged, not an image, over PIL's pixel limit) is
    left out with a :class:`~imc_cluster.data.folders.SkippedImagesWarning` that names it; a split with no
    decodable file is an error. The decoded splits are cached in the user cache folder ``cache_dir``
    (:func:`~imc_cluster.core.cache.cache_root`; see :func:`~imc_cluster.data.decoding.cached_decode`),
    never in ``path``.
    """
    size = check_image_size(image_size)
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"Image folder {path} not found: expected image files in it, in class "
            "folders or not, or train/ and test/ folders of them."
        )
    has_train, has_test = (path / "train").is_dir(), (path / "test").is_dir()
    if has_test and not has_train:
        raise DatasetNotFoundError(
            f"Image folder {path} has test/ but no train/: expected {path / 'train'} "
            f"beside it (training images), or the images in {path} itself."
        )
    tree = path / "train" if has_train else path
    files = find_image_files(tree)
    classes = folder_classes(files, tree, "auto")
    split = "train" if has_train else "all"
    train = warn_skipped(
        read_folder(tree, files, classes, path, split, size, None, "skip", cache_dir=cache_dir)
    )
    if not has_test:
        return train, train
    test_files = find_image_files(path / "test")
    if classes is not None:
        _check_test_classes(path, train.classes, test_files)
    test = warn_skipped(
        read_folder(
            path / "test",
            test_files,
            train.classes or None,
            path,
            "test",
            size,
            train.images.shape[3],
            "skip",
            keep_empty_classes=True,
            cache_dir=cache_dir,
        )
    )
    if train.images.shape[1:3] != test.images.shape[1:3]:
        raise ValueError(
            f"Train images are {train.images.shape[1]}x{train.images.shape[2]} but test images "
            f"are {test.images.shape[1]}x{test.images.shape[2]} (height x width); pass "
            "image_size= (--image_size on the command line) to bring both splits to one size."
        )
    return train, test
