"""Checkpoint files: any damage is reported as corruption, crafted or foreign files are refused without
running anything, every section is validated, and a failed write keeps the previous file."""

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import SECTIONS, CheckpointError, load_checkpoint, save_checkpoint


def one_line(error) -> bool:
    return "\n" not in str(error.value)


# ------------------------------------------------------------------ damage


@pytest.mark.parametrize("fraction", np.linspace(0.02, 0.98, 25).round(3).tolist())
def test_a_flipped_bit_anywhere_is_corruption(saved, tmp_path, fraction):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[int(fraction * len(data))] ^= 0x10
    (tmp_path / "bit.cpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt|not an imc-cluster checkpoint") as error:
        IMCSwAVClustering.load(tmp_path / "bit.cpt")
    assert one_line(error)


@pytest.mark.parametrize("kept", [0, 1, 100, 0.5, 0.99])
def test_truncation_is_corruption(saved, tmp_path, kept):
    path, _ = saved
    data = path.read_bytes()
    (tmp_path / "cut.cpt").write_bytes(data[: int(kept * len(data)) if isinstance(kept, float) else kept])
    with pytest.raises(CheckpointError, match="corrupt") as error:
        IMCSwAVClustering.load(tmp_path / "cut.cpt")
    assert one_line(error)


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_are_refused(tmp_path, seed):
    (tmp_path / "noise.cpt").write_bytes(np.random.default_rng(seed).bytes(5000))
    with pytest.raises(CheckpointError) as error:
        IMCSwAVClustering.load(tmp_path / "noise.cpt")
    assert one_line(error)


def test_truncated_and_missing_files(tiny, small_images, tmp_path):
    tiny().fit(small_images).save(tmp_path / "m.cpt")
    data = (tmp_path / "m.cpt").read_bytes()
    (tmp_path / "cut.cpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        IMCSwAVClustering.load(tmp_path / "cut.cpt")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        IMCSwAVClustering.load(tmp_path / "absent.cpt")


def test_a_directory_or_a_cut_header_is_named(saved, tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        IMCSwAVClustering.load(tmp_path)
    (tmp_path / "head.cpt").write_bytes(saved[0].read_bytes()[:30])
    with pytest.raises(CheckpointError, match="header line is incomplete") as error:
        IMCSwAVClustering.load(tmp_path / "head.cpt")
    assert one_line(error)


# ------------------------------------------------------------------ crafted, foreign and older files


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("with_header", [False, True])
def test_crafted_file_is_refused_and_runs_nothing(tmp_path, with_header):
    """A pickle that would run code, bare or behind a valid integrity header."""
    import hashlib
    import io

    marker = tmp_path / "pwned"
    body = io.BytesIO()
    torch.save({"params": RunsCode(str(marker))}, body)
    body = body.getvalue()
    header = f"imc-cluster-checkpoint 2 9 sha256={hashlib.sha256(body).hexdigest()} bytes={len(body)}\n"
    (tmp_path / "evil.cpt").write_bytes((header.encode() if with_header else b"") + body)
    with pytest.raises(CheckpointError, match="refusing" if with_header else "not an imc-cluster"):
        IMCSwAVClustering.load(tmp_path / "evil.cpt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ({"hello": 1}, "not an imc-cluster checkpoint"),
        ({"format": "imc-cluster", "format_version": 99, "library_version": "9.0"}, "format 99"),
    ],
)
def test_foreign_or_newer_files_are_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "x.cpt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "x.cpt")


def test_older_formats_are_refused_with_the_version(tmp_path):
    torch.save(
        {"format": "imc-cluster", "format_version": 1, "library_version": "0.1.0", "params": {}},
        tmp_path / "old.cpt",
    )
    with pytest.raises(CheckpointError, match=r"format 1.*reads format 2") as error:
        IMCSwAVClustering.load(tmp_path / "old.cpt")
    assert one_line(error)


# ------------------------------------------------------------------ the sections


CHANGES = {
    "a missing section": (lambda c: c.pop("inputs"), "inputs"),
    "params not a dict": (lambda c: c.__setitem__("params", [1]), "params"),
    "an unknown parameter": (lambda c: c["params"].__setitem__("evil", 1), "evil"),
    "an invalid parameter": (lambda c: c["params"].__setitem__("batch_size", -3), "batch_size"),
    "architecture of the wrong type": (lambda c: c["architecture"].__setitem__("width", "4"), "width"),
    "an unknown fitted attribute": (lambda c: c["fitted"].__setitem__("model_", 1), "model_"),
    "a fitted attribute missing": (lambda c: c["fitted"].pop("n_iter_"), "n_iter_"),
    "labels of the wrong type": (lambda c: c["fitted"].__setitem__("labels_", torch.zeros(3)), "labels_"),
    "history of the wrong type": (
        lambda c: c["fitted"].__setitem__("history_", [{"loss": {"nested": "dict"}}]),
        "history_",
    ),
    "a non-finite weight": (lambda c: c["model"]["head.0.weight"].__setitem__((0, 0), float("nan")), "NaN"),
    "a weight that is not a tensor": (lambda c: c["model"].__setitem__("head.0.bias", [0.0]), "head.0.bias"),
    "a weight of another shape": (
        lambda c: c["model"].__setitem__("head.0.bias", torch.zeros(3)),
        "architecture",
    ),
    "a missing weight": (lambda c: c["model"].pop("head.0.bias"), "architecture"),
    "inputs with a zero std": (lambda c: c["inputs"].__setitem__("pixel_std", [0.2, 0.0, 0.2]), "pixel_std"),
    "inputs of another channel count": (lambda c: c["inputs"].__setitem__("pixel_mean", [0.5]), "pixel_mean"),
    "inputs of the wrong kind": (lambda c: c["inputs"].__setitem__("is_image", 1), "is_image"),
    "training state missing its optimiser": (lambda c: c["training"].pop("optimizer"), "optimizer"),
    "a generator state of the wrong type": (
        lambda c: c["training"].__setitem__("generator", "x"),
        "generator",
    ),
    "vector statistics in an image checkpoint": (
        lambda c: c["inputs"].__setitem__("feature_mean", "zz"),
        "feature_mean",
    ),
    "an inverted pixel range": (
        lambda c: c["inputs"].__setitem__("pixel_range", [255.0, 0.0]),
        "pixel_range",
    ),
    "a sample shape that is not the features'": (
        lambda c: c["inputs"].__setitem__("sample_shape", [3, 99, 99]),
        "n_features_in_",
    ),
    "a negative feature count": (lambda c: c["fitted"].__setitem__("n_features_in_", -5), "n_features_in_"),
    "a negative epoch": (lambda c: c["training"].__setitem__("epoch", -5), "epoch"),
    "a head count of the wrong type": (lambda c: c["architecture"].__setitem__("n_heads", 3.0), "n_heads"),
    "a head count the weights lack": (lambda c: c["architecture"].__setitem__("n_heads", 2), "architecture"),
    "a best head of the wrong type": (lambda c: c["fitted"].__setitem__("best_head_", True), "best_head_"),
    "an image_shape of the wrong type": (
        lambda c: c["inputs"].__setitem__("image_shape", "8x8"),
        "image_shape",
    ),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_every_section_is_validated(tampered, name):
    change, match = CHANGES[name]
    with pytest.raises(CheckpointError, match=match) as error:
        IMCSwAVClustering.load(tampered(change))
    assert one_line(error)


def test_the_sections_are_the_documented_ones(saved):
    assert tuple(load_checkpoint(saved[0])) == SECTIONS


# ------------------------------------------------------------------ writing


def test_failed_write_keeps_the_previous_checkpoint(tiny, small_images, tmp_path, monkeypatch):
    target = tmp_path / "m.cpt"
    tiny().fit(small_images).save(target)
    first = target.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(load_checkpoint(target), target, "test")
    monkeypatch.undo()
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cpt"]  # no temporary file left
