"""Per-run copies of a working dir: fresh, writable, held while in use, swept after."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from runenv import runs


def entry(tmp_path: Path) -> Path:
    source = tmp_path / "entry"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("X = 1\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(source / "run.sh", 0o555)
    os.symlink("pkg/mod.py", source / "link.py")
    for path in (source / "pkg" / "mod.py", source / "pkg", source):
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~0o222)  # as entries are
    return source


def test_a_copy_is_the_same_tree_and_writable(tmp_path: Path) -> None:
    source = entry(tmp_path)
    copy, fd = runs.fresh_copy(str(source), str(tmp_path / "runs"))
    try:
        root = Path(copy)
        assert (root / "pkg" / "mod.py").read_text() == "X = 1\n"
        assert os.readlink(root / "link.py") == "pkg/mod.py"
        assert os.access(root / "run.sh", os.X_OK)  # modes kept, plus the owner's write bit
        assert (root / "pkg" / "mod.py").stat().st_mtime_ns == (
            source / "pkg" / "mod.py"
        ).stat().st_mtime_ns
        (root / "pkg" / "mod.py").write_text("X = 2\n")
        (root / "pkg" / "new.py").write_text("")
        assert (source / "pkg" / "mod.py").read_text() == "X = 1\n"
        assert not (source / "pkg" / "new.py").exists()
    finally:
        os.close(fd)


def test_sweep_removes_copies_nobody_holds(tmp_path: Path) -> None:
    source, where = entry(tmp_path), str(tmp_path / "runs")
    done, done_fd = runs.fresh_copy(str(source), where)
    os.close(done_fd)
    held, held_fd = runs.fresh_copy(str(source), where)  # this one swept `done`
    try:
        assert not Path(done).exists() and Path(held).is_dir()
        runs.sweep(where)
        assert Path(held).is_dir()  # still held
    finally:
        os.close(held_fd)
    runs.sweep(where)
    assert os.listdir(where) == []


def test_a_child_that_inherits_the_descriptor_holds_the_copy(tmp_path: Path) -> None:
    source, where = entry(tmp_path), str(tmp_path / "runs")
    copy, fd = runs.fresh_copy(str(source), where)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(fd,),
    )
    os.close(fd)  # the run's first process is gone; its child still runs there
    try:
        runs.sweep(where)
        assert Path(copy).is_dir()
    finally:
        child.communicate(b"")
    runs.sweep(where)
    assert not Path(copy).exists()


def test_a_copy_being_made_is_left_alone(tmp_path: Path) -> None:
    where = tmp_path / "runs"
    starting = where / ".new-0123456789abcdef"
    starting.mkdir(parents=True)  # no lock yet: its maker is between mkdir and flock
    runs.sweep(str(where))
    assert starting.is_dir()
    old = 10_000.0
    os.utime(starting, (old, old))  # a maker that died long ago
    runs.sweep(str(where))
    assert not starting.exists()
