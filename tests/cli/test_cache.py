"""``imc-cluster cache``: the cache folder and its size, and ``--clear``."""

import pytest

from imc_cluster.cli.cache import readable_size
from imc_cluster.core.cache import CACHE_ENV, cache_folder


@pytest.mark.parametrize(
    "n_bytes, text",
    [(0, "0 bytes"), (999, "999 bytes"), (1500, "1.5 kB"), (2_500_000, "2.5 MB"), (3 * 10**12, "3.0 TB")],
)
def test_readable_sizes(n_bytes, text):
    assert readable_size(n_bytes) == text


def test_the_folder_and_its_size_then_cleared(tmp_path, run_cli):
    root = tmp_path / "cache"
    status, text, _ = run_cli(["cache", "--cache_dir", root])
    assert (status, text) == (0, f"{root}: 0 bytes (not created yet)\n")
    (cache_folder("decoded", root) / "a.npz").write_bytes(b"x" * 1500)
    marker = sum(file.stat().st_size for file in root.iterdir() if file.is_file())
    status, text, _ = run_cli(["cache", "--cache-dir", root])
    assert (status, text) == (0, f"{root}: {readable_size(1500 + marker)}\n")
    status, text, _ = run_cli(["cache", "--cache_dir", root, "--clear"])
    assert (status, text) == (0, f"cleared {root}: 1.5 kB freed\n")
    assert not (root / "decoded").exists()


def test_without_the_flag_the_environment_names_the_folder(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    status, text, _ = run_cli(["cache"])
    assert status == 0 and text.startswith(f"{tmp_path / 'env'}: ")


def test_a_folder_that_is_not_a_cache_is_not_cleared(tmp_path, run_cli):
    (tmp_path / "precious.txt").write_text("keep me")
    status, _, err = run_cli(["cache", "--cache_dir", tmp_path, "--clear"])
    assert status == 2 and err.startswith("imc-cluster: Refusing to clear") and err.count("\n") == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"
