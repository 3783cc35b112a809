"""Which files packaging takes: excludes, ignore files, default excludes, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

from trees import TreeBuilder

from runenv.packaging.walk import walk_tree


def included(root: Path, **options: object) -> list[str]:
    tree = walk_tree(root, **options)  # type: ignore[arg-type]
    return [entry.path for entry in tree.files] + tree.directories


FILES: dict[str, str | bytes] = {
    "main.py": "print(1)\n",
    "model.ckpt": "weights",
    "sub/model.ckpt": "weights",
    "sub/deep/x.txt": "x",
    "build/out.o": "o",
    "sub/build/keep.py": "k",
    "data/big.bin": "b" * 100,
    "keep.txt": "k",
    "notes.txt": "n",
}


def test_star_matches_at_any_depth(make_tree: TreeBuilder) -> None:
    assert "sub/model.ckpt" not in included(make_tree(FILES), excludes=["*.ckpt"])
    assert "model.ckpt" not in included(make_tree(FILES), excludes=["*.ckpt"])


def test_star_does_not_cross_slashes_but_double_star_does(make_tree: TreeBuilder) -> None:
    root = make_tree(FILES)
    assert "sub/deep/x.txt" in included(root, excludes=["sub/*.txt"])
    assert "sub/deep/x.txt" not in included(root, excludes=["sub/**/*.txt"])


def test_directory_pattern_with_trailing_slash(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, "data.txt": "a file named like the directory"})
    paths = included(root, excludes=["data/"])
    assert "data/big.bin" not in paths
    assert "data.txt" in paths


def test_negation_brings_back_a_file(make_tree: TreeBuilder) -> None:
    paths = included(make_tree(FILES), excludes=["*.txt", "!keep.txt"])
    assert "keep.txt" in paths
    assert "notes.txt" not in paths


def test_anchored_pattern_only_at_root(make_tree: TreeBuilder) -> None:
    paths = included(make_tree(FILES), excludes=["/build"])
    assert "build/out.o" not in paths
    assert "sub/build/keep.py" in paths


def test_nested_gitignore_applies_to_its_own_subtree(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, "sub/.gitignore": "*.txt\n", "other/y.txt": "y"})
    paths = included(root)
    assert "sub/deep/x.txt" not in paths
    assert "other/y.txt" in paths
    assert "notes.txt" in paths
    assert "sub/.gitignore" in paths


def test_gitignore_patterns_are_relative_to_their_directory(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, "sub/.gitignore": "/deep\n"})
    paths = included(root)
    assert "sub/deep/x.txt" not in paths
    assert "sub/model.ckpt" in paths


def test_runenvignore_file(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, ".runenvignore": "data/\n"})
    assert "data/big.bin" not in included(root)


def test_excludes_can_override_gitignore(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, ".gitignore": "*.txt\n"})
    paths = included(root, excludes=["!keep.txt"])
    assert "keep.txt" in paths
    assert "notes.txt" not in paths


def test_ignore_files_can_be_turned_off(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, ".gitignore": "*.txt\n"})
    assert "notes.txt" in included(root, ignore_files=())


def test_default_excludes(make_tree: TreeBuilder) -> None:
    root = make_tree(
        {
            **FILES,
            ".git/HEAD": "ref",
            ".venv/bin/python": "py",
            "venv/lib/x.py": "x",
            "pkg/__pycache__/m.cpython-311.pyc": "c",
            "pkg/m.py": "m",
        }
    )
    paths = included(root)
    assert "pkg/m.py" in paths
    assert not [p for p in paths if p.startswith((".git", ".venv", "venv")) or "__pycache__" in p]


def test_default_excludes_can_be_overridden(make_tree: TreeBuilder) -> None:
    root = make_tree({"venv/lib/x.py": "x", ".venv/y": "y", "a.py": "a"})
    assert "venv/lib/x.py" in included(root, excludes=["!venv/"])
    assert ".venv/y" in included(root, default_excludes=())


def test_excluded_report(make_tree: TreeBuilder) -> None:
    root = make_tree({**FILES, ".git/objects/a": "x" * 1000, ".git/HEAD": "ref"})
    tree = walk_tree(root, excludes=["*.ckpt", "data/"])
    excluded = tree.excluded
    assert excluded.files == 5  # two .ckpt, data/big.bin, two under .git
    assert excluded.directories == 2
    assert excluded.bytes == 7 + 7 + 100 + 1000 + 3
    assert excluded.largest[:2] == [(1003, ".git/"), (100, "data/")]


def test_empty_directories_are_kept(make_tree: TreeBuilder) -> None:
    assert "empty/" in included(make_tree({"a.py": "", "empty/": ""}))


def test_symlinked_file_is_stored_as_its_content(make_tree: TreeBuilder) -> None:
    root = make_tree({"real.txt": "content"})
    os.symlink("real.txt", root / "link.txt")
    tree = walk_tree(root)
    link = next(entry for entry in tree.files if entry.path == "link.txt")
    assert link.source == str(root / "real.txt")
    assert tree.external_links == []


def test_link_leaving_the_root_is_followed_and_reported(make_tree: TreeBuilder) -> None:
    outside = make_tree({"shared/util.py": "u"})
    root = make_tree({"main.py": "m"})
    os.symlink(outside / "shared", root / "shared")
    tree = walk_tree(root)
    assert "shared/util.py" in [entry.path for entry in tree.files]
    assert tree.external_links == [("shared", str(outside / "shared"))]


def test_link_cycle_does_not_hang(make_tree: TreeBuilder) -> None:
    root = make_tree({"a/b/file.py": "f"})
    os.symlink("../..", root / "a" / "b" / "up")
    os.symlink(".", root / "self")
    tree = walk_tree(root)
    assert [entry.path for entry in tree.files] == ["a/b/file.py"]
    assert sorted(tree.skipped) == [("a/b/up", "symlink cycle"), ("self", "symlink cycle")]


def test_broken_link_is_skipped_and_reported(make_tree: TreeBuilder) -> None:
    root = make_tree({"a.py": "a"})
    os.symlink("missing", root / "dangling")
    tree = walk_tree(root)
    assert tree.skipped == [("dangling", "broken symlink")]


def test_prefix_for_py_modules(make_tree: TreeBuilder) -> None:
    root = make_tree({"__init__.py": "", "sub/m.py": ""})
    assert included(root, prefix="mypkg/") == ["mypkg/__init__.py", "mypkg/sub/m.py"]


def test_name_that_is_not_utf8_is_skipped_and_reported(make_tree: TreeBuilder) -> None:
    root = make_tree({"a.py": "a"})
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"a file whose name is Latin-1")
    tree = walk_tree(root)
    assert [entry.path for entry in tree.files] == ["a.py"]
    assert tree.skipped == [("caf\udce9.txt", "name is not valid UTF-8")]
