"""The ``imc-cluster cache`` command: where the cache folder of imc-cluster is and how much it holds, or
(``--clear``) empty it (:mod:`imc_cluster.core.cache`). It loads no torch.

    imc-cluster cache
    imc-cluster cache --clear
"""

from __future__ import annotations

import argparse

from imc_cluster.core.cache import cache_root, cache_size, clear_cache

__all__ = ["readable_size", "run_command"]


def readable_size(n_bytes: int) -> str:
    """``n_bytes`` in the largest unit that keeps a number of at least 1 (``"12.3 MB"``, ``"512 bytes"``)."""
    size, unit = float(n_bytes), "bytes"
    for larger in ("kB", "MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, larger
    return f"{n_bytes} bytes" if unit == "bytes" else f"{size:.1f} {unit}"


def run_command(args: argparse.Namespace) -> None:
    """Print the cache folder (``--cache_dir``, else the user's) and its size; with ``--clear``, empty it
    first and print what that freed."""
    root = cache_root(args.cache_dir)
    if args.clear:
        print(f"cleared {root}: {readable_size(clear_cache(args.cache_dir))} freed")
        return
    created = "" if root.is_dir() else " (not created yet)"
    print(f"{root}: {readable_size(cache_size(args.cache_dir))}{created}")
