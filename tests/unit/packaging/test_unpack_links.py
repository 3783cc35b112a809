"""Links judged as a whole: whatever an archive's links and their order, nothing in the unpacked
tree resolves outside it (property tests over random trees of links)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runenv import PackagingError, UnsafeArchiveError
from runenv.packaging import unpack

NAMES = st.sampled_from(["a", "b", "q"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
TARGETS = st.one_of(
    st.lists(st.sampled_from(["a", "b", "q", "..", "."]), min_size=1, max_size=8).map("/".join),
    st.just("/etc"),
)
ENTRY = st.tuples(st.sampled_from(["dir", "file", "symlink"]), PATHS, TARGETS)


def write_archive(path: Path, entries: list[tuple[str, str, str]], fmt: str) -> Path:
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for kind, name, target in entries:
                info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
                info.create_system = 3
                mode = {"dir": stat.S_IFDIR | 0o755, "file": stat.S_IFREG | 0o644}
                info.external_attr = mode.get(kind, stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, target if kind == "symlink" else b"x" * (kind == "file"))
        return path
    with tarfile.open(path, "w:gz") as archive:
        for kind, name, target in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            else:
                info.size = 1
            archive.addfile(info, io.BytesIO(b"x") if kind == "file" else None)
    return path


def reachable_outside(root: Path) -> list[str]:
    """Every path reachable from ``root`` by walking it and following its links, as the kernel
    resolves them, that lands outside ``root`` (an oracle independent of unpack's own check)."""
    top = os.path.realpath(root)
    outside, seen, stack = [], set(), [str(root)]
    while stack:
        path = stack.pop()
        resolved = os.path.realpath(path)
        if os.path.commonpath([top, resolved]) != top:
            outside.append(os.path.relpath(path, root))
            continue
        if resolved in seen or not os.path.isdir(resolved):
            continue
        seen.add(resolved)
        stack += [os.path.join(path, child) for child in os.listdir(path)]
    return outside


@pytest.mark.filterwarnings("ignore:Duplicate name")  # random names repeat
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(ENTRY, min_size=1, max_size=8), fmt=st.sampled_from(["zip", "tar"]))
def test_no_unpacked_tree_resolves_outside_itself(
    entries: list[tuple[str, str, str]], fmt: str
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        (base / "host" / "a" / "b").mkdir(parents=True)  # what an escape would reach
        archive = write_archive(base / f"random.{fmt}", entries, fmt)
        destination = base / "host" / "a" / "b" / "cache" / "entry"
        try:
            unpack(archive, destination)
        except (UnsafeArchiveError, PackagingError):
            assert not destination.exists()
            assert sorted(p.name for p in destination.parent.iterdir()) == []
            return
        assert reachable_outside(destination) == []


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_a_link_through_a_link_written_later_is_refused(tmp_path: Path, fmt: str) -> None:
    """The issue's case: ``esc`` climbs through ``q/q/…`` before ``q -> .`` exists."""
    target = "/".join(["q"] * 20 + [".."] * 20 + ["some", "host", "dir"])
    entries = [("symlink", "esc", target), ("symlink", "q", ".")]
    archive = write_archive(tmp_path / f"order.{fmt}", entries, fmt)
    with pytest.raises(UnsafeArchiveError, match="'esc' is a link to"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_lifted_top_directory_cannot_leave_a_link_to_its_parent(tmp_path: Path) -> None:
    entries = [("dir", "top", ""), ("symlink", "top/up", ".."), ("file", "top/main.py", "")]
    archive = write_archive(tmp_path / "lift.zip", entries, "zip")
    with pytest.raises(UnsafeArchiveError, match="'top/up' is a link to"):
        unpack(archive, tmp_path / "out", lift_single_directory=True)
    unpack(archive, tmp_path / "kept")  # unlifted, `up` stays inside: fine
    assert (tmp_path / "kept" / "top" / "up").is_symlink()
