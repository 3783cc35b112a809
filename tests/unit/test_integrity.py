"""Stat manifests: what each way of changing an entry looks like to the check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runenv import integrity


@pytest.fixture
def entry(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "entry"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (root / "pkg" / "sub" / "data.txt").write_text("data\n")
    (root / "tab\tand\nnewline.py").write_text("odd name\n")
    os.symlink("pkg/mod.py", root / "link.py")
    manifest = tmp_path / "entry.manifest"
    integrity.record(root, manifest)
    return root, manifest


def test_an_unchanged_entry_passes(entry: tuple[Path, Path]) -> None:
    root, manifest = entry
    assert integrity.check(root, manifest) is None
    assert integrity.check(root, manifest, full=True) is None


@pytest.mark.parametrize(
    ("change", "state", "detail"),
    [
        (lambda r: (r / "pkg" / "mod.py").open("a").write("X = 2\n"), "modified", "pkg/mod.py"),
        (lambda r: (r / "pkg" / "sub" / "data.txt").unlink(), "modified", "from pkg/sub"),
        (lambda r: (r / "pkg" / "evil.pth").write_text("x"), "modified", "added to or removed"),
        (lambda r: (r / "link.py").unlink() or os.symlink("/etc", r / "link.py"), "modified", ""),
        (lambda r: (r / "tab\tand\nnewline.py").write_text("changed!\n"), "modified", "tab"),
    ],
)
def test_each_change_is_found(
    entry: tuple[Path, Path], change: object, state: str, detail: str
) -> None:
    root, manifest = entry
    change(root)  # type: ignore[operator]
    problem = integrity.check(root, manifest)
    assert problem is not None and problem.state == state and detail in problem.detail


def test_same_size_same_time_edit_needs_the_full_check(entry: tuple[Path, Path]) -> None:
    root, manifest = entry
    module = root / "pkg" / "mod.py"
    before = module.stat()
    module.write_text("VALUE = 9\n")
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert integrity.check(root, manifest) is None
    problem = integrity.check(root, manifest, full=True)
    assert problem is not None and "content differs" in problem.detail


def test_damaged_manifests(entry: tuple[Path, Path]) -> None:
    root, manifest = entry
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    assert integrity.check(root, manifest) == integrity.check(root, manifest)  # stable
    problem = integrity.check(root, manifest)
    assert problem is not None and problem.state == "damaged"
    manifest.unlink()
    missing = integrity.check(root, manifest)
    assert missing is not None and "missing" in missing.detail


def test_read_only_entries_are_checked_by_directory_unless_root_or_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ro"
    (root / "pkg").mkdir(parents=True)
    for index in range(300):  # more paths than a small entry (a lock) has
        (root / "pkg" / f"m{index}.py").write_text("")
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    manifest = tmp_path / "ro.manifest"
    integrity.record(root, manifest, read_only=True)
    (root / "pkg" / "mod.py").write_text("VALUE = 22\n")  # only possible after a chmod
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert integrity.check(root, manifest) is None  # a normal user: directories only
    assert integrity.check(root, manifest, full=True) is not None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert integrity.check(root, manifest) is not None  # root, not sealed: every file
    header, rest = manifest.read_text().split("\n", 1)
    manifest.write_text(f"{header}\tsealed\n{rest}")
    assert integrity.check(root, manifest) is None  # root, sealed: directories only
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (root / "pkg" / "new.py").write_text("")
    assert integrity.check(root, manifest) is not None  # a name added: a directory moved


def test_a_small_read_only_entry_is_checked_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lock"
    root.mkdir()
    (root / "lock.json").write_text('{"a": "1.0"}')
    manifest = tmp_path / "lock.manifest"
    integrity.record(root, manifest, read_only=True)
    (root / "lock.json").write_text('{"a": "9.9"}')
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert integrity.check(root, manifest) is not None
