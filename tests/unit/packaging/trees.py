"""Building file trees for packaging tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

# Files written by a test are "racily clean" for the hash cache for 2 s; age them instead.
OLD = time.time() - 3600

TreeBuilder = Callable[[dict[str, str | bytes]], Path]


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create ``files`` (path -> content) under ``root``; a path ending in / is an empty dir."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    age(root)
    return root


def age(root: Path) -> None:
    for directory, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(directory, name), (OLD, OLD), follow_symlinks=False)
