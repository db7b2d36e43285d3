"""The presets of ``train``: every value that of a train flag and a valid estimator parameter, listed one
line each in ``train --help``, filling only the flags not given."""

import pytest

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.commands import estimator_params
from imc_cluster.cli.flags import PARAM_FLAGS
from imc_cluster.cli.parser import parse_args
from imc_cluster.cli.presets import PRESETS
from imc_cluster.estimator.params import check_params

#: the destinations of the flags of estimator parameters (and of the data sets' --image_size)
PARAMETER_DESTINATIONS = {flag[2:] for flags in PARAM_FLAGS.values() for flag in flags.split("/")}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_value_is_an_estimator_parameter(name):
    preset = PRESETS[name]
    assert set(preset.flags) <= PARAMETER_DESTINATIONS
    args = parse_args(["train", "--dataset", "folder", "--preset", name])
    for dest, value in preset.flags.items():
        assert getattr(args, dest) == value, dest
    params = estimator_params(args, n_clusters=10, crop_sizes=(28, 18))
    estimator = IMCSwAVClustering(**params)
    estimator._validate_params()
    check_params(estimator.get_params())


def test_train_help_lists_every_preset_on_one_line(run, capsys):
    assert run(["train", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, preset in PRESETS.items():
        assert f"  {name}  ".ljust(2 + max(map(len, PRESETS)) + 2) + preset.summary in [
            line.rstrip() for line in lines
        ]


def test_the_data_sets_own_preset_is_its_default_and_flags_win():
    digits = parse_args(["train", "--dataset", "digits"])
    assert (digits.epochs, digits.prototypes, digits.flip_prob) == (150, 100, 0.0)
    assert parse_args(["train", "--dataset", "digits", "--epochs", "7"]).epochs == 7
    assert parse_args(["train", "--dataset", "c10"]).epochs == 500  # the published defaults elsewhere
    assert parse_args(["train", "--dataset", "digits", "--preset", "cpu"]).epochs == 500


def test_the_cpu_preset_sizes_a_laptop_run():
    folder = parse_args(["train", "--dataset", "folder", "--preset", "cpu", "--batch-size", "16"])
    assert (folder.image_size, folder.backbone_width, folder.precision) == ([32], 32, "float32")
    assert folder.batch_size == 16  # given
    assert folder.nmb_crops[0] + folder.nmb_crops[1] < 6  # fewer views than the published 2 + 4
    c10 = parse_args(["train", "--dataset", "c10", "--preset", "cpu"])
    assert c10.image_size is None  # a named data set keeps its size
    given = parse_args(["train", "--dataset", "folder", "--preset", "cpu", "--image_size", "48"])
    assert given.image_size == [48]
