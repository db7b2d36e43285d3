"""The notebooks of notebooks/: every one runs end to end at CI sizes, and is committed without outputs.

A notebook runs here as in Jupyter's "run all": its code cells in order, in one namespace, from the
notebooks folder, with matplotlib's Agg backend. Right after its one cell tagged "parameters" (papermill's
convention) the sizes in :data:`CI_SIZES` replace the shipped ones, so that this file stays fast while the
notebooks as shipped keep their own sizes (each runs in under 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
#: the CIFAR-10 JPEG copy the CIFAR notebooks read: $IMC_CLUSTER_CIFAR10, else ../shared/data/ beside the
#: repository (where the notebooks look too)
CIFAR_ARCHIVE = Path(
    os.environ.get("IMC_CLUSTER_CIFAR10")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
)
#: a notebook whose code names this file needs the archive
CIFAR_NAME = "cifar10-jpeg.tar.gz"

#: per notebook, the CI values of settings of its parameters cell, each smaller than the shipped one
CI_SIZES: dict[str, dict[str, int]] = {
    "quickstart.ipynb": {"EPOCHS": 2},
    "own_images.ipynb": {"N_IMAGES": 24, "EPOCHS": 1, "BACKBONE_WIDTH": 4},
    "reproduce_table.ipynb": {
        "TRAIN_PER_CLASS": 3,
        "TEST_PER_CLASS": 2,
        "EPOCHS": 1,
        "BACKBONE_WIDTH": 4,
        "WARMUP": 2,
    },
}


class NotebookError(AssertionError):
    """A notebook that cannot run here; the message names the notebook and the cell."""


def read_notebook(path: Path) -> dict:
    """The notebook's JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def cell_source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def parameters_cells(notebook: dict) -> list[int]:
    """Indices of the cells tagged "parameters"."""
    return [
        index
        for index, cell in enumerate(notebook["cells"])
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]


def shipped_values(source: str) -> dict:
    """The names that the top-level assignments of ``source`` bind, with their literal values (None for
    values that are not literals)."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        values[target.id] = None
    return values


def ipython_lines(source: str) -> list[str]:
    """Lines that only IPython runs: magics (``%``) and shell escapes (``!``)."""
    return [line.strip() for line in source.splitlines() if line.lstrip().startswith(("%", "!"))]


def _run_cell(name: str, index: int, source: str, namespace: dict) -> None:
    """Run one code cell in ``namespace``; an IPython-only line or an error is a NotebookError."""
    if ipython_lines(source):
        raise NotebookError(
            f"{name}, cell {index}: IPython-only line {ipython_lines(source)[0]!r}; use "
            "Python (subprocess or the package's functions)."
        )
    try:
        exec(compile(source, f"<{name}, cell {index}>", "exec"), namespace)
    except (Exception, SystemExit) as error:
        raise NotebookError(f"{name}, cell {index} failed: {type(error).__name__}: {error}") from error


def run_notebook(path: Path, sizes: dict | None = None) -> dict:
    """Run the code cells of the notebook at ``path`` in order in one namespace, from the current folder;
    ``sizes`` replace settings of the parameters cell right after it. Returns the namespace.

    Raises
    ------
    NotebookError
        For an IPython-only line, a size that the parameters cell does not set, or a failing cell (with
        the notebook, the cell index and the error; the error is chained).
    """
    notebook = read_notebook(path)
    namespace: dict = {"__name__": "__main__"}
    marked = parameters_cells(notebook)
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        _run_cell(path.name, index, cell_source(cell), namespace)
        if sizes and index in marked:
            missing = sorted(set(sizes) - set(shipped_values(cell_source(cell))))
            if missing:
                raise NotebookError(
                    f"{path.name}: the parameters cell (cell {index}) does not set {missing}."
                )
            namespace.update(sizes)
    return namespace


def _notebook_id(path: Path) -> str:
    return path.name


@pytest.fixture
def agg():
    """matplotlib's Agg backend; every figure closed afterwards."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")

    yield
    plt.close("all")


def test_notebooks_are_listed():
    assert NOTEBOOKS, f"no notebook in {NOTEBOOKS_DIR}"
    assert sorted(CI_SIZES) == [path.name for path in NOTEBOOKS], (
        "every notebook needs CI sizes in CI_SIZES (and only those in notebooks/)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_notebook_is_stripped_with_one_parameters_cell(path):
    notebook = read_notebook(path)
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name}, cell {index}: outputs not stripped"
            )
            assert not ipython_lines(cell_source(cell)), f"{path.name}, cell {index}: IPython-only line"
        else:
            assert "outputs" not in cell and "execution_count" not in cell, f"{path.name}, cell {index}"
    marked = parameters_cells(notebook)
    assert len(marked) == 1, f"{path.name}: {len(marked)} cells tagged 'parameters', not one"
    cell = notebook["cells"][marked[0]]
    assert cell["cell_type"] == "code"
    shipped = shipped_values(cell_source(cell))
    for name, value in CI_SIZES.get(path.name, {}).items():
        assert name in shipped, f"{path.name}: the parameters cell does not set {name}"
        assert isinstance(shipped[name], int) and value < shipped[name], (
            f"{path.name}: CI {name} = {value} is not below the shipped {shipped[name]!r}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_notebook_id)
def test_notebook_runs(path, agg, monkeypatch):
    if CIFAR_NAME in path.read_text(encoding="utf-8") and not CIFAR_ARCHIVE.is_file():
        pytest.skip(
            f"{path.name} needs the CIFAR-10 JPEG copy, not at {CIFAR_ARCHIVE} "
            "(set IMC_CLUSTER_CIFAR10 to its path)"
        )
    monkeypatch.setenv("IMC_CLUSTER_CIFAR10", str(CIFAR_ARCHIVE))
    monkeypatch.chdir(NOTEBOOKS_DIR)
    namespace = run_notebook(path, CI_SIZES[path.name])
    for name, value in CI_SIZES[path.name].items():
        assert namespace[name] == value, f"{path.name} changed {name} after its parameters cell"


# ------------------------------------------------------------------------------ the runner itself
def _write_notebook(path: Path, *sources: str) -> Path:
    """A notebook of code cells ``sources``, the first one tagged "parameters"."""
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{index}",
            "outputs": [],
            "source": source,
            "metadata": {"tags": ["parameters"]} if index == 0 else {},
        }
        for index, source in enumerate(sources)
    ]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_runner_replaces_sizes_after_the_parameters_cell(tmp_path):
    path = _write_notebook(tmp_path / "a.ipynb", "EPOCHS = 60\nWIDTH = 16", "RESULT = EPOCHS * WIDTH")
    assert run_notebook(path)["RESULT"] == 960
    assert run_notebook(path, {"EPOCHS": 2})["RESULT"] == 32


@pytest.mark.parametrize("line", ["%matplotlib inline", "  !ls", "!pip install x"])
def test_runner_refuses_ipython_lines(tmp_path, line):
    path = _write_notebook(tmp_path / "magic.ipynb", "EPOCHS = 1", f"x = 1\n{line}\n")
    with pytest.raises(NotebookError, match=r"magic\.ipynb, cell 1: IPython-only"):
        run_notebook(path)


def test_runner_names_the_failing_cell(tmp_path):
    path = _write_notebook(tmp_path / "broken.ipynb", "EPOCHS = 1", "x = 1", "y = {}['missing']")
    with pytest.raises(NotebookError, match=r"broken\.ipynb, cell 2 failed: KeyError: 'missing'") as caught:
        run_notebook(path)
    assert isinstance(caught.value.__cause__, KeyError)


def test_runner_refuses_sizes_the_parameters_cell_does_not_set(tmp_path):
    path = _write_notebook(tmp_path / "a.ipynb", "EPOCHS = 60", "WIDTH = 16")
    with pytest.raises(NotebookError, match=r"does not set \['WIDTH'\]"):
        run_notebook(path, {"EPOCHS": 1, "WIDTH": 4})
