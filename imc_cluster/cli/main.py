"""The ``imc-cluster`` command line: ``train`` and ``test`` with the published IMC-SwAV flags, ``predict``,
and ``cache``.

    imc-cluster train --dataset C10 --path ./dataset --size_crops 28 18 --output_dir ./c10 --cpt_name c10.cpt
    imc-cluster test  --dataset c10 --path ./dataset --size_crops 28 18 --cpt_load_path ./c10/c10.cpt
    imc-cluster train --dataset folder --path ./photos --n_clusters 20 --image_size 64 --output_dir ./run
    imc-cluster predict --cpt_load_path ./run/model.cpt --path ./photos --output_dir ./clusters
    imc-cluster cache --clear

The parser (:mod:`~imc_cluster.cli.parser`) loads neither torch nor scikit-learn, so ``--help``,
``--version`` and usage errors answer at once; the commands are imported when one runs
(:mod:`~imc_cluster.cli.commands`, :mod:`~imc_cluster.cli.cache`).

An error of the run (a bad flag value, a missing or unreadable file or checkpoint, a diverged fit, a CUDA
error) ends the command with one line ``imc-cluster: <message>`` on stderr and exit status 2; the estimator
parameters it names are spelled as their flags. Under ``torchrun`` rank 0 alone prints, and an error names
its rank.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence

from imc_cluster.cli.flags import PARAM_FLAGS
from imc_cluster.cli.parser import build_parser, parse_args
from imc_cluster.cli.presets import PRESETS

__all__ = [
    "PRESETS",
    "PARAM_FLAGS",
    "RUN_ERRORS",
    "main",
    "build_parser",
    "parse_args",
    "with_flags",
]

#: errors of a run rather than of the program, which ``main`` reports in one line with exit status 2: bad
#: values and checkpoints (a CheckpointError is a ValueError), files, a diverged fit (a DivergenceError is a
#: FloatingPointError), and torch's runtime errors (CUDA)
RUN_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, RuntimeError)
#: RuntimeError subclasses that are bugs: they keep their traceback
BUGS = (NotImplementedError, RecursionError)
#: the module of each command, imported when it runs: ``cache`` needs no torch
_COMMANDS = {
    "train": "imc_cluster.cli.commands",
    "test": "imc_cluster.cli.commands",
    "predict": "imc_cluster.cli.commands",
    "cache": "imc_cluster.cli.cache",
}
#: the names this module had before the commands moved out, still given (from the commands' module)
_MOVED = ("train", "test", "predict", "estimator_params")


def __getattr__(name: str):
    """The commands' names, from their module (which loads torch) on first use."""
    if name in _MOVED:
        return getattr(importlib.import_module(_COMMANDS["train"]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: the flags that several parameters share (``--nmb_crops``: ``n_large_crops`` and ``n_small_crops``)
_SHARED_FLAGS = {flag for flag in PARAM_FLAGS.values() if list(PARAM_FLAGS.values()).count(flag) > 1}
#: what may not precede a parameter's name in a message (it is then part of a word, flag or path)
_BEFORE = r"(?<![\w\-'/.])"


def _flag_pattern(name: str) -> str:
    """How a message names parameter ``name``: quoted, followed by ``=``, or (when it holds an underscore,
    unlike English words such as "device") bare."""
    bare = rf"|{_BEFORE}{name}(?![\w'=])" if "_" in name else ""
    return rf"{_BEFORE}'{name}'|{_BEFORE}{name}={bare}"


def _as_flag(flag: str, match: re.Match) -> str:
    """``flag`` for a parameter's name; ``name=value`` becomes ``flag value``."""
    return flag + " " if match.group().endswith("=") else flag


def with_flags(line: str) -> str:
    """A message of the estimator or the data code in the command line's terms: every parameter that has a
    flag of its own spelled as that flag (``n_clusters=1`` as ``--n_clusters 1``, scikit-learn's "The
    'batch_size' parameter of IMCSwAVClustering" as ``--batch_size``); the flags of the parameters that share
    one (``n_large_crops``) are added as ``(flag: --nmb_crops)``.

    Parameters
    ----------
    line : str
        One line of a message.

    Returns
    -------
    str
    """
    line = re.sub(r"[Tt]he ('\w+') parameter of \w+", r"\1", line)
    for name, flag in PARAM_FLAGS.items():
        if flag not in _SHARED_FLAGS and flag not in line:
            line = re.sub(_flag_pattern(name), functools.partial(_as_flag, flag), line)
    named = {
        flag
        for name, flag in PARAM_FLAGS.items()
        if flag in _SHARED_FLAGS and re.search(rf"\b{name}\b", line)
    }
    return f"{line} (flag: {', '.join(sorted(named))})" if named else line


def _message(error: Exception) -> str:
    """The first line of ``error``'s message (an OSError's without its "[Errno N]" prefix), in flags."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if error.filename is None else f"{error.strerror}: {error.filename}"
    lines = str(error).strip().splitlines()
    return with_flags(lines[0]) if lines else type(error).__name__


def _rank() -> int | None:
    """This process's rank under torchrun of several processes (its environment says so, also after the
    command has left the process group), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    return int(os.environ.get("RANK", "0"))


def _fail(message: str, status: int) -> int:
    """Print ``imc-cluster: <message>`` on stderr (naming the rank under torchrun) and return ``status``."""
    rank = _rank()
    print(f"imc-cluster: {'' if rank is None else f'rank {rank}: '}{message}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``imc-cluster`` and ``python -m imc_cluster``.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments after the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        The exit status: 0 on success, 2 after one line ``imc-cluster: <message>`` on stderr for an error
        of the run (:data:`RUN_ERRORS`: bad values, files, checkpoints, divergence, CUDA), 130 when
        interrupted. argparse exits 2 on usage errors itself; any other exception is a bug and keeps its
        traceback.
    """
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args) -> int:
    """Run the parsed command; the exit status."""
    try:
        importlib.import_module(_COMMANDS[args.command]).run_command(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BUGS:
        raise
    except RUN_ERRORS as error:
        return _fail(_message(error), 2)
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of a run as one line ``imc-cluster: warning: <message>`` on stderr (rank 0's alone), the
    parameters it names spelled as their flags."""
    if _rank() in (None, 0):
        print(f"imc-cluster: warning: {with_flags(str(message))}", file=sys.stderr, flush=True)
