"""The version: the packaged one."""

import importlib
from pathlib import Path

import tomllib

import imc_cluster

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_packaged_one():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    if "version" in project.get("dynamic", []):  # read by setuptools from the attribute it names
        module, _, name = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"].rpartition(".")
        packaged = getattr(importlib.import_module(module), name)
    else:
        packaged = project["version"]
    assert imc_cluster.__version__ == packaged
