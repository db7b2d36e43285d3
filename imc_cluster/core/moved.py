"""The modules of imc-cluster 0.2, before the package was split into layers, as deprecated aliases.

``import imc_cluster.callbacks`` (and every other flat module of 0.2 that no longer exists) still works: it
gives the module's new home, with a :class:`DeprecationWarning` that names it. So do estimators pickled by
0.2, whose pickles name those modules. The finder is asked last, so a module of the same name that exists
now, such as the subpackage ``imc_cluster.data``, is imported as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED_MODULES", "install"]

#: the flat modules of imc-cluster 0.2 that no longer exist, and their new homes
MOVED_MODULES = {
    f"imc_cluster.{old}": f"imc_cluster.{new}"
    for old, new in {
        "batchnorm": "model.batchnorm",
        "callbacks": "estimator.callbacks",
        "cli_output": "cli.output",
        "cli_parser": "cli.parser",
        "cli_predict": "cli.predict",
        "colour": "augmentation.color",
        "config": "estimator.params",
        "crop_boxes": "augmentation.crop_boxes",
        "datasets": "data.datasets",
        "distributed": "training.distributed",
        "fitting": "estimator.fitting",
        "folder_prediction": "prediction.folder",
        "gallery": "prediction.typical",
        "headbank": "training.headbank",
        "imagefiles": "data.decoding",
        "imagefolder": "data.folders",
        "inputs": "data.encoder",
        "networks": "model.networks",
        "objectives": "model.objectives",
        "persistence": "checkpoints.files",
        "plots": "pictures",
    }.items()
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the 0.2 modules and loads each as its new home, with a DeprecationWarning."""

    def find_spec(self, fullname: str, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        warnings.warn(
            f"{spec.name} is the imc-cluster 0.2 name of {new}; import {new} (or the names of imc_cluster "
            "itself) instead: the old name will be removed.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        """The new module is already executed."""


def install() -> None:
    """Put the finder of the 0.2 modules on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
