"""The modules of imc-cluster 0.2 as deprecated aliases of their new homes: old imports and 0.2 pickles."""

import importlib
import pickle
import sys

import pytest

import imc_cluster
from imc_cluster.core.moved import MOVED_MODULES
from imc_cluster.data.encoder import InputEncoder


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_every_module_of_0_2_imports_as_its_new_home_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=MOVED_MODULES[old]):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])


def test_the_new_homes_exist_and_no_alias_shadows_a_module_of_today():
    for old, new in MOVED_MODULES.items():
        importlib.import_module(new)
        assert importlib.util.find_spec(old).loader.__class__.__name__ == "_Alias"


def test_a_pickle_naming_a_0_2_module_loads_with_a_warning():
    encoder = InputEncoder((8, 8), "auto", None)
    data = pickle.dumps(encoder, protocol=2).replace(b"imc_cluster.data.encoder", b"imc_cluster.inputs")
    assert b"imc_cluster.inputs" in data
    sys.modules.pop("imc_cluster.inputs", None)
    with pytest.warns(DeprecationWarning, match="imc_cluster.inputs"):
        restored = pickle.loads(data)
    assert isinstance(restored, InputEncoder) and restored.image_shape == (8, 8)


def test_a_module_that_never_existed_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("imc_cluster.no_such_module")
    assert imc_cluster.__version__
