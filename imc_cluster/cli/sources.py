"""What the parser takes from the estimator and the data sets, read from their source files with :mod:`ast`
rather than imported, so that ``imc-cluster --help`` loads neither torch nor scikit-learn: the estimator's
defaults (its ``__init__`` signature, the one home of every default), its parameter documentation (the class
docstring) and the names of the data sets (the keys of their loaders).

Only literal values are read; tests check each against the imported modules.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

__all__ = ["estimator_defaults", "parameter_help", "parameter_options", "dataset_names"]

_PACKAGE = Path(__file__).resolve().parents[1]
#: the estimator class, in the file that defines it
_ESTIMATOR = (_PACKAGE / "estimator" / "estimator.py", "IMCSwAVClustering")
#: the dict of data set loaders, keyed by the data set names, in the file that defines it
_LOADERS = (_PACKAGE / "data" / "datasets.py", "_LOADERS")


@functools.cache
def _module(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _estimator_class() -> ast.ClassDef:
    path, name = _ESTIMATOR
    return next(node for node in _module(path).body if isinstance(node, ast.ClassDef) and node.name == name)


@functools.cache
def estimator_defaults() -> dict:
    """The default of every estimator parameter, from the signature of ``IMCSwAVClustering.__init__``.

    Returns
    -------
    dict
        Parameter name to default, as the literal the signature writes (tuples stay tuples).
    """
    init = next(
        node
        for node in _estimator_class().body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    arguments = init.args
    positional = arguments.args[len(arguments.args) - len(arguments.defaults) :]
    pairs = [*zip(positional, arguments.defaults), *zip(arguments.kwonlyargs, arguments.kw_defaults)]
    return {argument.arg: ast.literal_eval(default) for argument, default in pairs}


@functools.cache
def _docstring() -> list[str]:
    return (ast.get_docstring(_estimator_class()) or "").splitlines()


def _entry(name: str) -> int:
    """The line of the estimator's docstring that documents parameter ``name`` (``name : type``)."""
    for number, line in enumerate(_docstring()):
        names = line.partition(" : ")[0]
        if " : " in line and name in (part.strip() for part in names.split(",")):
            return number
    raise LookupError(f"The estimator documents no parameter {name!r}.")


def parameter_help(name: str) -> str:
    """The first sentence of parameter ``name``'s description in the estimator's docstring, as plain text.

    Raises
    ------
    LookupError
        When the docstring documents no parameter ``name``.
    """
    lines = _docstring()
    start = _entry(name) + 1
    text = " ".join(line.strip() for line in lines[start : start + 3])
    return text.split(". ")[0].rstrip(".").replace("``", "")


def parameter_options(name: str) -> tuple[str, ...]:
    """The strings that parameter ``name`` takes, as its docstring entry lists them (``{"a", "b"}``).

    Raises
    ------
    LookupError
        When the docstring documents no parameter ``name`` or lists no options for it.
    """
    kind = _docstring()[_entry(name)].partition(" : ")[2]
    options = re.match(r"\{[^}]*\}", kind)
    if options is None:
        raise LookupError(f"The estimator's docstring lists no options of {name!r}.")
    return tuple(ast.literal_eval(options.group().replace("{", "[").replace("}", "]")))


@functools.cache
def dataset_names() -> tuple[str, ...]:
    """The names of the data sets, in the order of their loaders (``imc_cluster.data.datasets.DATASETS``)."""
    path, name = _LOADERS
    for node in _module(path).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return tuple(ast.literal_eval(key) for key in node.value.keys)
    raise LookupError(f"{path} defines no {name}.")
