"""The package's layers: every subpackage imports only the layers below it (the contract in
pyproject.toml, checked by import-linter), and nothing defers an import to dodge a cycle."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "imc_cluster"
#: imports that may stay inside a function: optional extras loaded only when used
OPTIONAL = {"matplotlib", "matplotlib.pyplot", "tensorboard", "torch.utils.tensorboard"}


def test_the_layers_contract_is_kept():
    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("import-linter is missing: install the test extra (pip install -e '.[test]').")
    result = subprocess.run(
        [lint_imports, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_every_subpackage_says_what_it_owns_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init} needs a docstring naming what it may import"


def test_no_import_of_the_package_inside_a_function():
    deferred = []
    for module in PACKAGE.rglob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.ImportFrom)
                        and (inner.level or (inner.module or "").startswith("imc_cluster"))
                    ) or (
                        isinstance(inner, ast.Import)
                        and any(a.name.startswith("imc_cluster") for a in inner.names)
                    ):
                        deferred.append(f"{module.relative_to(ROOT)}:{inner.lineno}")
    assert not deferred, f"deferred imports of the package: {deferred}"


def test_the_package_uses_absolute_imports_only():
    relative = [
        f"{m.relative_to(ROOT)}:{n.lineno}"
        for m in PACKAGE.rglob("*.py")
        for n in ast.walk(ast.parse(m.read_text()))
        if isinstance(n, ast.ImportFrom) and n.level
    ]
    assert not relative, relative
