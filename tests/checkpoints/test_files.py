"""Checkpoint files: any damage is reported as corruption, crafted or foreign files are refused without
running anything, and a failed write keeps the previous file."""

import numpy as np
import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint


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
