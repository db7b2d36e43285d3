"""What the parser reads from the estimator's and the data sets' source files equals what those modules hold
when imported; and so the command line's help, version, usage errors and ``cache`` load neither torch nor
scikit-learn, while ``import imc_cluster`` still gives every public name (on first use)."""

import json
import subprocess
import sys

import pytest
from sklearn.utils._param_validation import StrOptions

import imc_cluster
from imc_cluster.cli import sources
from imc_cluster.data.datasets import DATASETS
from imc_cluster.estimator.estimator import IMCSwAVClustering
from imc_cluster.estimator.params import PARAMETER_CONSTRAINTS

#: modules that the command line must not load before a command that needs them runs
HEAVY = ("torch", "torchvision", "sklearn", "scipy", "PIL")


def test_defaults_are_the_signatures():
    assert sources.estimator_defaults() == IMCSwAVClustering().get_params()


def test_data_set_names_are_those_of_the_loaders():
    assert sources.dataset_names() == DATASETS


def test_options_are_those_the_estimator_checks():
    allowed = next(c for c in PARAMETER_CONSTRAINTS["precision"] if isinstance(c, StrOptions)).options
    assert set(sources.parameter_options("precision")) == set(allowed)


def test_help_is_the_first_sentence_of_the_docstring():
    assert sources.parameter_help("temperature") == "Softmax temperature tau of the prototype assignments"
    assert sources.parameter_help("n_small_crops") == sources.parameter_help("n_large_crops")


@pytest.mark.parametrize("read", [sources.parameter_help, sources.parameter_options])
def test_an_undocumented_parameter_is_a_lookup_error(read):
    with pytest.raises(LookupError, match="no_such_parameter"):
        read("no_such_parameter")


def test_a_parameter_without_options_is_a_lookup_error():
    with pytest.raises(LookupError, match="lists no options of 'batch_size'"):
        sources.parameter_options("batch_size")


# ------------------------------------------------------------------ nothing heavy before a command runs

#: runs the command lines given as JSON in argv[1] through main, then prints the heavy modules loaded
PROBE = f"""
import contextlib, io, json, sys
from imc_cluster.cli.main import main
for argv in json.loads(sys.argv[1]):
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), \\
            contextlib.redirect_stderr(io.StringIO()):
        main(argv)
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""


def test_help_version_usage_errors_and_cache_load_no_torch(tmp_path):
    argvs = [
        ["--help"],
        ["--version"],
        *([command, "--help"] for command in ("train", "test", "predict", "cache")),
        ["train", "--dataset", "c10", "--n_cluster", "3"],
        ["cache", "--cache_dir", str(tmp_path)],
    ]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_the_package_gives_every_public_name_on_first_use():
    code = (
        "import sys, imc_cluster; assert 'torch' not in sys.modules; from imc_cluster import *; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == "ok\n", result.stderr
    assert set(imc_cluster.__all__) <= set(dir(imc_cluster))
    for name in imc_cluster.__all__:
        assert getattr(imc_cluster, name) is not None, name
    assert imc_cluster.IMCSwAVClustering is IMCSwAVClustering
    assert imc_cluster.metrics.cluster_accuracy is imc_cluster.cluster_accuracy  # subpackages as before


def test_an_unknown_name_of_the_package_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        imc_cluster.no_such_name  # noqa: B018
