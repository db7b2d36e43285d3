"""Resuming ``train`` from the checkpoint alone: its settings without retyping them, the flags given
overriding its training settings, and those that would change its network refused together; ``test`` and a
resumed ``train`` read a folder at the checkpoint's input size, and refuse images its network cannot take."""

import numpy as np
import pytest
from PIL import Image

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.parser import parse_args
from imc_cluster.cli.resume import check_data, resume
from imc_cluster.data.datasets import PUBLISHED_NORMALIZATION, ImageSet


def labelled_folder(root, shape: tuple[int, ...], per_class: int = 4):
    """An ImageFolder tree of two classes of random ``shape`` PNGs."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(image.squeeze()).save(root / name / f"{index}.png")
    return root


def resume_argv(checkpoint, tmp_path, *flags) -> list[str]:
    """A digits ``train`` resuming ``checkpoint``, no flag of the network or of training but ``flags``."""
    return [
        "train",
        "--dataset",
        "digits",
        "--path",
        str(tmp_path),
        "--cpt_load_path",
        str(checkpoint),
        "--output_dir",
        str(tmp_path / "out"),
        "--limit_train",
        "64",
        "--limit_test",
        "64",
        "--dev",
        "cpu",
        "--quiet",
        *flags,
    ]


def test_a_resume_takes_the_checkpoints_settings_and_the_flags_given(digits_checkpoint, tmp_path, run_cli):
    saved = IMCSwAVClustering.load(digits_checkpoint).get_params()
    status, text, err = run_cli(
        resume_argv(digits_checkpoint, tmp_path, "--epochs", "2", "--learning-rate", "0.002")
    )
    assert status == 0, err
    assert "resuming" in text and "epoch 2/2" in text
    resumed = IMCSwAVClustering.load(tmp_path / "out" / "model.cpt")
    assert resumed.n_iter_ == 2
    params = resumed.get_params()
    assert (params["max_epochs"], params["learning_rate"]) == (2, 0.002)  # given
    kept = (
        "backbone_width",
        "n_prototypes",
        "projection_dim",
        "batch_size",
        "warmup_updates",
        "lr_milestones",
    )
    assert {name: params[name] for name in kept} == {name: saved[name] for name in kept}  # not the preset's


def test_flags_given_override_training_settings_only(digits_checkpoint, tmp_path):
    estimator = IMCSwAVClustering.load(digits_checkpoint)
    saved = estimator.get_params()
    args = parse_args(resume_argv(digits_checkpoint, tmp_path, "--batch_size", "16", "--max_time", "2m"))
    params = {**saved, "batch_size": 16, "max_time": 120.0, "max_epochs": 999, "checkpoint_path": "x.cpt"}
    resume(estimator, args, {**params, "verbose": 0})
    changed = {name for name, value in estimator.get_params().items() if value != saved[name]}
    assert changed == {"batch_size", "max_time", "checkpoint_path", "warm_start"}
    assert estimator.max_time == 120.0 and estimator.warm_start


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--model_type", "resnet34"], "--model_type resnet34 (the checkpoint's: resnet18)"),
        (["--backbone-width", "8"], "--backbone_width 8 (the checkpoint's: 4)"),
        (["--n_clusters", "5"], "--n_clusters 5 (the checkpoint's: 10)"),
        (["--prototypes", "20"], "--prototypes 20 (the checkpoint's: 10)"),
        (["--project_dim", "16"], "--project_dim 16 (the checkpoint's: 8)"),
        (
            ["--prototypes", "20", "--n_clusters", "5", "--backbone_width", "8"],
            "--backbone_width 8 (the checkpoint's: 4); --n_clusters 5 (the checkpoint's: 10); "
            "--prototypes 20 (the checkpoint's: 10). Leave them out",
        ),
    ],
)
def test_flags_that_change_the_network_are_one_error(flags, expected, digits_checkpoint, tmp_path, run_cli):
    status, _, err = run_cli(resume_argv(digits_checkpoint, tmp_path / "nothing", *flags))
    assert status == 2 and err.count("\n") == 1, err
    assert f"imc-cluster: {digits_checkpoint} holds another network than the flags say: {expected}" in err


def test_flags_that_repeat_the_network_are_no_conflict(digits_checkpoint, tmp_path, run_cli):
    flags = ["--model_type", "resnet18", "--backbone_width", "4", "--n_clusters", "10", "--epochs", "2"]
    status, _, err = run_cli(resume_argv(digits_checkpoint, tmp_path, *flags))
    assert status == 0, err


def folder_argv(checkpoint, folder, command: str, *flags) -> list[str]:
    argv = [command, "--dataset", "folder", "--path", folder, "--cpt_load_path", checkpoint, "--dev", "cpu"]
    return [
        *argv,
        *flags,
        *(["--output_dir", folder.parent / "out", "--quiet"] if command == "train" else []),
    ]


def test_test_and_resume_read_a_folder_at_the_checkpoints_size(digits_checkpoint, tmp_path, run_cli):
    folder = labelled_folder(tmp_path / "images", (10, 12), per_class=6)  # grey, not 8x8; 10 clusters
    status, text, err = run_cli(folder_argv(digits_checkpoint, folder, "test"))
    assert status == 0 and text.startswith("ACC "), err
    status, text, err = run_cli(folder_argv(digits_checkpoint, folder, "train", "--epochs", "2"))
    assert status == 0 and "epoch 2/2" in text, err


@pytest.mark.parametrize("command", ["test", "train"])
def test_another_image_size_given_is_refused(command, digits_checkpoint, tmp_path, run_cli):
    folder = labelled_folder(tmp_path / "images", (10, 10))
    status, _, err = run_cli(folder_argv(digits_checkpoint, folder, command, "--image-size", "10"))
    assert status == 2 and err.count("\n") == 1, err
    assert "--image_size 10 (the checkpoint's: 8 8)" in err


@pytest.mark.parametrize("command", ["test", "train"])
def test_images_of_other_channels_are_refused(command, digits_checkpoint, tmp_path, run_cli):
    folder = labelled_folder(tmp_path / "images", (8, 8, 3))
    status, _, err = run_cli(folder_argv(digits_checkpoint, folder, command))
    assert status == 2 and err.count("\n") == 1, err
    assert f"--dataset folder --path {folder} gives images of shape (C, H, W) = (3, 8, 8), but" in err
    assert f"{digits_checkpoint} takes (1, 8, 8)" in err


def test_a_data_set_of_other_published_statistics_is_refused(digits_checkpoint, tmp_path):
    images = np.zeros((4, 8, 8, 1), np.uint8)
    labels = np.zeros(4, np.int64)
    data = ImageSet("C10", images, labels, images, labels, ["a"], (8, 6))
    args = parse_args(resume_argv(digits_checkpoint, tmp_path))
    args.dataset = "c10"
    estimator = IMCSwAVClustering.load(digits_checkpoint)
    check_data(args, data, estimator, resuming=False)  # test reads it as the checkpoint was trained
    with pytest.raises(ValueError, match=r"--dataset c10 --path .* published \(mean, std\)") as error:
        check_data(args, data, estimator, resuming=True)
    assert str(PUBLISHED_NORMALIZATION["C10"]) in str(error.value)
