"""The package size limit, and an error that shows where the bytes are."""

from __future__ import annotations

import heapq
from collections import Counter

from runenv.errors import PackagingError
from runenv.packaging.walk import LARGEST_SHOWN, Tree
from runenv.units import human_bytes


def check_size(tree: Tree, limit: int) -> None:
    """Raise :class:`PackagingError` when the included content is over ``limit`` bytes."""
    total = tree.total_bytes
    if total <= limit:
        return
    files = heapq.nlargest(LARGEST_SHOWN, ((e.size, e.path) for e in tree.files))
    directories = heapq.nlargest(LARGEST_SHOWN, ((s, p) for p, s in _directory_sizes(tree).items()))
    lines = [
        f"{tree.root} is {human_bytes(total)} after excludes, over the limit of "
        f"{human_bytes(limit)}",
        "largest files:",
        *(f"  {human_bytes(size):>10}  {path}" for size, path in files),
    ]
    if directories:
        lines += ["largest directories:"]
        lines += [f"  {human_bytes(size):>10}  {path}" for size, path in directories]
    raise PackagingError(
        "\n".join(lines),
        hint='add large paths to `excludes` (e.g. "data/", "*.ckpt"), or upload the directory '
        "yourself and pass its remote URI (s3://, gs://, https://) as working_dir; "
        "RUNENV_MAX_PACKAGE_MB raises the limit",
    )


def _directory_sizes(tree: Tree) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for entry in tree.files:
        parts = entry.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            sizes["/".join(parts[:depth]) + "/"] += entry.size
    return sizes
