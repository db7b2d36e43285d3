"""The command line, end to end on digits and on a slice of the CIFAR-10 copy."""

import json
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli import build_parser, main

CIFAR_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
TINY_FLAGS = ["--backbone_width", "4", "--prototypes", "10", "--project_dim", "8", "--warmup", "2",
              "--dev", "cpu", "--quiet"]

PUBLISHED = [
    "train --dataset C10 --path ./dataset --size_crops 28 18 --output_dir ./c10 --cpt_name c10.cpt",
    "train --dataset C20 --path ./dataset --size_crops 28 18 --output_dir ./c20 --cpt_name c20.cpt",
    "train --dataset STL10 --path ./dataset --size_crops 76 52 --output_dir ./stl10 --cpt_name stl10.cpt",
    "train --dataset C100 --path ./dataset --size_crops 28 18 --batch_size 512 --output_dir ./c100 "
    "--cpt_name c100.cpt",
    "train --dataset tiny --path ./dataset --size_crops 56 36 --batch_size 512 --output_dir ./tiny "
    "--cpt_name tiny.cpt",
    "test  --dataset c10 --path ./dataset --size_crops 28 18 --cpt_load_path ./c10/c10.cpt",
    "train --dataset c10 --nmb_crops 2 4 --max_scale_crops 1. 0.4 --min_scale_crops 0.2 0.08 --tau 0.1 "
    "--eps 0.05 --project_dim 128 --prototypes 1000 --learning_rate 0.0005 --warmup 500 --l2_w 1e-5 "
    "--epochs 500 --batch_size 256 --model_type resnet18 --nmb_workers 4 --dev 0 --cpt_load_path x.cpt",
]


@pytest.mark.parametrize("command", PUBLISHED)
def test_published_command_lines_parse(command):
    args = build_parser().parse_args(shlex.split(command))
    assert args.dataset in ("c10", "c20", "stl10", "c100", "tiny")


def test_flags_keep_their_published_meaning():
    args = build_parser().parse_args(shlex.split(PUBLISHED[-1]))
    assert (args.nmb_crops, args.max_scale_crops, args.min_scale_crops) == ([2, 4], [1.0, 0.4], [0.2, 0.08])
    assert (args.tau, args.eps, args.project_dim, args.prototypes) == (0.1, 0.05, 128, 1000)
    assert (args.learning_rate, args.warmup, args.l2_w, args.epochs) == (5e-4, 500, 1e-5, 500)
    assert (args.batch_size, args.model_type, args.dev, args.cpt_load_path) == (256, "resnet18", "0", "x.cpt")


def run(argv, capsys):
    assert main(argv) == 0
    return capsys.readouterr().out


def test_train_resume_and_test_on_digits(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--dataset", "DIGITS", "--path", str(tmp_path), "--batch_size", "256", *TINY_FLAGS]
    text = run(["train", *base, "--epochs", "1", "--output_dir", str(out), "--cpt_name", "d.cpt"], capsys)
    assert "epoch 1/1 | loss" in text and "test ACC" in text and "img/s" in text
    text = run(["train", *base, "--epochs", "2", "--output_dir", str(out), "--cpt_name", "d.cpt",
                "--cpt_load_path", str(out / "d.cpt")], capsys)
    assert "resuming" in text and "epoch 2/2" in text and "epoch 1/2" not in text
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and {"acc", "nmi", "ari", "swav", "mi"} <= set(history[1])
    straight = tmp_path / "straight"
    straight.mkdir()
    (straight / "history.jsonl").write_text('{"epoch": 7}\n')  # an older run's: a fresh run replaces it
    run(["train", *base, "--epochs", "2", "--output_dir", str(straight), "--cpt_name", "d.cpt"], capsys)
    history = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    resumed, direct = (IMCSwAVClustering.load(p / "d.cpt") for p in (out, straight))
    for a, b in zip(resumed.model_.state_dict().values(), direct.model_.state_dict().values()):
        assert torch.equal(a, b)
    text = run(["test", "--dataset", "digits", "--path", str(tmp_path), "--cpt_load_path", str(out / "d.cpt")],
               capsys)
    assert text.startswith("ACC ") and "NMI" in text and "ARI" in text


def test_missing_data_set_is_one_line_naming_the_path(tmp_path, capsys):
    assert main(["train", "--dataset", "c10", "--path", str(tmp_path / "nothing"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imc-cluster: ") and err.count("\n") == 1 and str(tmp_path / "nothing") in err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "imc_cluster", "train", "--help"], capture_output=True,
                            text=True, check=True)
    for flag in ("--dataset", "--size_crops", "--cpt_load_path", "--nmb_crops", "--l2_w", "--dev"):
        assert flag in result.stdout


@pytest.fixture(scope="module")
def cifar_slice(tmp_path_factory):
    """12 training and 4 test JPEGs per class from the shared CIFAR-10 copy, as an ImageFolder tree."""
    if not CIFAR_ARCHIVE.exists():
        pytest.skip("the CIFAR-10 copy is not beside the repository")
    root = tmp_path_factory.mktemp("cifar")
    wanted = {f"{split}/{cls}/{i:04d}.jpg" for split, n in (("train", 12), ("test", 4)) for i in range(n)
              for cls in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        members = [m for m in archive.getmembers() if m.name.lstrip("./") in wanted]
        archive.extractall(root, members=members, filter="data")
    tops = [p for p in root.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 and not (root / "train").exists() else root


def test_train_and_test_on_a_cifar_slice(cifar_slice, tmp_path, capsys):
    out = tmp_path / "c10"
    base = ["--dataset", "folder", "--path", str(cifar_slice), "--size_crops", "28", "18"]
    text = run(["train", *base, "--epochs", "1", "--batch_size", "60", "--output_dir", str(out),
                "--cpt_name", "c10.cpt", *TINY_FLAGS], capsys)
    assert "epoch 1/1" in text
    text = run(["test", *base, "--cpt_load_path", str(out / "c10.cpt")], capsys)
    assert text.startswith("ACC ")
    assert IMCSwAVClustering.load(out / "c10.cpt").input_shape_ == (3, 32, 32)


def test_dataset_presets_fill_defaults_and_flags_win():
    from imc_cluster.cli import parse_args

    digits = parse_args(["train", "--dataset", "digits"])
    assert (digits.epochs, digits.prototypes, digits.flip_prob) == (150, 100, 0.0)
    assert parse_args(["train", "--dataset", "digits", "--epochs", "7"]).epochs == 7
    assert parse_args(["train", "--dataset", "c10"]).epochs == 500  # the published defaults elsewhere


def test_speed_and_memory_flags_reach_the_estimator():
    from imc_cluster.cli import estimator_params
    args = build_parser().parse_args(shlex.split("train --dataset c10 --compile --precision bfloat16 "
                                                 "--activation_checkpointing"))
    params = estimator_params(args, 10, (28, 18))
    assert (params["compile"], params["precision"], params["activation_checkpointing"]) == (True, "bfloat16", True)
    defaults = estimator_params(build_parser().parse_args(["train", "--dataset", "c10"]), 10, (28, 18))
    assert (defaults["compile"], defaults["precision"], defaults["activation_checkpointing"]) == (False, "auto", False)
