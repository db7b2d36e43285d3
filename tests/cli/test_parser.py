"""The command line's parser: the published command lines and the meaning of their flags, the data sets'
--version, and help texts in plain text that show each command's own flags."""

import re
import shlex
import subprocess
import sys

import pytest

import imc_cluster
from imc_cluster.cli.commands import estimator_params
from imc_cluster.cli.parser import build_parser, parse_args

PUBLISHED_COMMANDS = [
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


#: reStructuredText markup that must not reach a terminal
MARKUP = ("``", ":class:", ":func:", ":data:", ":attr:", "~imc_cluster")


# ------------------------------------------------------------------ the published command lines


@pytest.mark.parametrize("command", PUBLISHED_COMMANDS)
def test_published_command_lines_parse(command):
    args = build_parser().parse_args(shlex.split(command))
    assert args.dataset in ("c10", "c20", "stl10", "c100", "tiny")


def test_flags_keep_their_published_meaning():
    args = build_parser().parse_args(shlex.split(PUBLISHED_COMMANDS[-1]))
    assert (args.nmb_crops, args.max_scale_crops, args.min_scale_crops) == ([2, 4], [1.0, 0.4], [0.2, 0.08])
    assert (args.tau, args.eps, args.project_dim, args.prototypes) == (0.1, 0.05, 128, 1000)
    assert (args.learning_rate, args.warmup, args.l2_w, args.epochs) == (5e-4, 500, 1e-5, 500)
    assert (args.batch_size, args.model_type, args.dev, args.cpt_load_path) == (256, "resnet18", "0", "x.cpt")


# ------------------------------------------------------------------ --version


def test_version_in_process_and_as_a_module(capsys, run, run_module):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"imc-cluster {imc_cluster.__version__}\n"
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imc-cluster {imc_cluster.__version__}\n"


# ------------------------------------------------------------------ help texts


@pytest.fixture
def help_text(run, capsys):
    """``help_text(*command)``: what ``imc-cluster command --help`` prints (exit status 0)."""

    def text(*command: str) -> str:
        assert run([*command, "--help"]) == 0
        return capsys.readouterr().out

    return text


@pytest.mark.parametrize(
    "command", [[], ["train"], ["test"], ["predict"]], ids=["top", "train", "test", "predict"]
)
def test_help_is_plain_text(command, help_text):
    text = help_text(*command)
    assert text.startswith("usage: imc-cluster")
    for markup in MARKUP:
        assert markup not in text, markup
    assert "default: None" not in text and "default: False" not in text


def test_top_level_help_names_the_commands_and_version(help_text):
    text = help_text()
    assert all(word in text for word in ("train", "test", "--version", "--cpt_load_path"))


def test_test_help_shows_only_the_flags_of_test(help_text):
    text = help_text("test")
    shown = set(re.findall(r"--\w+", text))
    assert shown == {
        "--help",
        "--dataset",
        "--path",
        "--image_size",
        "--limit_test",
        "--dev",
        "--cpt_load_path",
        "--json",
        "--output_json",
        "--size_crops",
        "--cache_dir",
        "--cache",  # the hyphenated example of the spelling note
    }
    # the published test command line passes --size_crops, which the checkpoint makes moot
    assert re.search(r"--size_crops [^-]*compatibility[^-]*no effect", " ".join(text.split()))


def test_train_help_keeps_its_flags(help_text):
    shown = set(re.findall(r"--\w+", help_text("train")))
    assert {"--size_crops", "--limit_train", "--nmb_workers", "--quiet", "--cpt_load_path"} <= shown
    assert "--json" not in shown


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "imc_cluster", "train", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--dataset", "--size_crops", "--cpt_load_path", "--nmb_crops", "--l2_w", "--dev"):
        assert flag in result.stdout


def test_train_flags_default_to_the_estimator_defaults(published):
    """Without flags (and without a preset), train gives the estimator the published defaults: the flags'
    defaults come from the estimator, and together they set exactly its parameters."""
    args = parse_args(["train", "--dataset", "c10"])
    params = estimator_params(args, n_clusters=10, crop_sizes=(28, 18))
    defaults = imc_cluster.IMCSwAVClustering().get_params()
    flagged = {
        name for name in params if name in defaults and name not in ("device", "verbose", "random_state")
    }
    for name in flagged - {
        "n_clusters",
        "large_crop_size",
        "small_crop_size",
        "checkpoint_path",
        "normalization",
    }:
        assert params[name] == defaults[name], name
    for name, value in published.items():
        if name in params:
            assert params[name] == (tuple(value) if isinstance(value, list) else value), name


def test_every_train_flag_sets_its_parameter():
    """Each estimator flag moves the parameter it names (both halves of the pair flags), so flag and parameter
    cannot drift apart."""
    flags = (
        "--nmb_crops 3 5 --max_scale_crops 0.9 0.5 --min_scale_crops 0.3 0.1 --tau 0.2 --eps 0.03 "
        "--project_dim 64 --prototypes 300 --model_type resnet34 --backbone_width 32 --learning_rate 0.001 "
        "--warmup 10 --l2_w 0.0001 --epochs 7 --batch_size 64 --milestones 2 4 --compile --precision float32 "
        "--activation_checkpointing --flip_prob 0.1 --color_jitter 0.1 0.2 0.3 0.05 --color_jitter_prob 0.3 "
        "--max_time 1h30m --cache_dir ./cache"
    )
    changed = parse_args(["train", "--dataset", "c10", *shlex.split(flags)])
    params = estimator_params(changed, n_clusters=10, crop_sizes=(28, 18))
    assert params == {
        **params,
        "n_large_crops": 3,
        "n_small_crops": 5,
        "large_crop_scale": (0.3, 0.9),
        "small_crop_scale": (0.1, 0.5),
        "temperature": 0.2,
        "sinkhorn_epsilon": 0.03,
        "projection_dim": 64,
        "n_prototypes": 300,
        "backbone": "resnet34",
        "backbone_width": 32,
        "learning_rate": 0.001,
        "warmup_updates": 10,
        "weight_decay": 0.0001,
        "max_epochs": 7,
        "batch_size": 64,
        "lr_milestones": (2, 4),
        "compile": True,
        "precision": "float32",
        "activation_checkpointing": True,
        "flip_prob": 0.1,
        "color_jitter": (0.1, 0.2, 0.3, 0.05),
        "color_jitter_prob": 0.3,
        "max_time": 5400.0,
        "cache_dir": "./cache",
    }
    imc_cluster.IMCSwAVClustering(**params)._validate_params()
