"""Walking a directory the way packaging sees it: ignore rules, symlinks, what was left out.

Ignore rules are gitignore rules (pathspec), applied in this order, the last matching pattern
deciding: the default excludes, then each directory's ``.gitignore`` and ``.runenvignore`` (from
the root down, each relative to its own directory), then the caller's ``excludes`` (relative to
the root), so a ``!pattern`` in ``excludes`` can bring back anything the others left out.
A directory that is left out is not entered, as in git.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from runenv import inputs, settings
from runenv.errors import PackagingError

DEFAULT_EXCLUDES = (".git/", ".venv/", "venv/", "__pycache__/")
IGNORE_FILES = (".gitignore", ".runenvignore")
LARGEST_SHOWN = 10
# Counting the size of a left-out directory stops after this many entries (node_modules...).
_EXCLUDED_SCAN_LIMIT = 50_000


@dataclass(frozen=True)
class FileEntry:
    """A file to package: its archive path, where its content is read from, and its stat."""

    path: str  # posix, relative to the archive root
    source: str  # absolute path the content is read from (a symlink's target)
    size: int
    executable: bool
    mtime_ns: int
    ctime_ns: int
    inode: int


@dataclass
class Excluded:
    """What the ignore rules left out."""

    files: int = 0
    directories: int = 0
    bytes: int = 0
    partial: bool = False  # some left-out directories were too large to count fully
    largest: list[tuple[int, str]] = field(default_factory=list)  # (bytes, path), biggest first

    def add(self, path: str, size: int, is_dir: bool) -> None:
        self.directories += is_dir
        self.bytes += size
        heapq.heappush(self.largest, (size, path))
        if len(self.largest) > LARGEST_SHOWN:
            heapq.heappop(self.largest)


@dataclass
class Tree:
    """The result of a walk: included files and directories, and what was left out or odd."""

    root: Path
    files: list[FileEntry] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)  # posix, each ending in "/"
    excluded: Excluded = field(default_factory=Excluded)
    external_links: list[tuple[str, str]] = field(default_factory=list)  # (path, target)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)


@dataclass(frozen=True)
class _Rules:
    """Ignore specs that apply to a directory, in order, each with the directory it is relative
    to: the defaults, the ignore files from the root down, then the caller's excludes."""

    defaults: tuple[_Spec, ...]
    nested: tuple[_Spec, ...]
    excludes: tuple[_Spec, ...]

    def ignores(self, path: str) -> bool:
        decision = False
        is_dir = path.endswith("/")
        for spec in (*self.defaults, *self.nested, *self.excludes):
            if spec.directories_only and not is_dir:
                continue  # such patterns match files only through their (pruned) directories
            result = spec.patterns.check_file(path[len(spec.base) :])
            if result.include is not None:
                decision = bool(result.include)
        return decision


@dataclass(frozen=True)
class _Spec:
    base: str  # the directory the patterns are relative to, "" or ending in "/"
    patterns: pathspec.GitIgnoreSpec
    directories_only: bool

    @classmethod
    def from_lines(cls, base: str, lines: Sequence[str]) -> _Spec:
        active = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        only_dirs = all(line.endswith("/") for line in active)
        return cls(base, pathspec.GitIgnoreSpec.from_lines(list(lines)), only_dirs)


def walk_tree(
    root: Path,
    *,
    excludes: Sequence[str] = (),
    default_excludes: Sequence[str] = DEFAULT_EXCLUDES,
    ignore_files: Iterable[str] = IGNORE_FILES,
    prefix: str = "",
) -> Tree:
    """Walk ``root``; archive paths start with ``prefix`` (e.g. ``"mypkg/"`` for py_modules).

    A path deeper than unpacking accepts (``RUNENV_MAX_UNPACK_DEPTH``) is refused here, where
    the user can still leave it out, and so that no tree can exhaust the recursion limit.
    """
    root = root.resolve()
    rules = _Rules(_root_specs(default_excludes), (), _root_specs(excludes))
    tree = Tree(root=root)
    walker = _Walker(tree, tuple(ignore_files), prefix, settings.max_unpack_depth())
    walker.walk_directory(str(root), "", rules, frozenset({_identity(root)}))
    tree.files.sort(key=lambda entry: entry.path)
    tree.directories.sort()
    tree.excluded.largest.sort(reverse=True)
    return tree


def single_file_tree(path: Path, archive_path: str) -> Tree:
    """A tree holding one file (a py_modules ``.py`` file)."""
    tree = Tree(root=path.parent.resolve())
    inputs.note_path(str(path))
    tree.files.append(_file_entry(archive_path, str(path.resolve()), path.stat()))
    return tree


class _Walker:
    def __init__(
        self, tree: Tree, ignore_files: tuple[str, ...], prefix: str, max_depth: int
    ) -> None:
        self.tree = tree
        self.ignore_files = ignore_files
        self.prefix = prefix
        self.root_text = str(tree.root)
        self.max_depth = max_depth

    def walk_directory(
        self, directory: str, relative: str, rules: _Rules, ancestors: frozenset[tuple[int, int]]
    ) -> None:
        inputs.note_path(directory)  # its listing: a file added or removed shows in its stat
        rules = self._with_ignore_files(directory, relative, rules)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            self.tree.skipped.append((relative or ".", f"cannot list: {error.strerror}"))
            return
        if relative and not entries:
            self.tree.directories.append(self.prefix + relative)
        for entry in entries:
            self._visit(entry, relative + entry.name, rules, ancestors)

    def _visit(
        self,
        entry: os.DirEntry[str],
        path: str,
        rules: _Rules,
        ancestors: frozenset[tuple[int, int]],
    ) -> None:
        try:
            info = os.stat(entry.path)  # follows symlinks: a link is stored as what it points to
        except OSError:
            reason = "broken symlink" if entry.is_symlink() else "cannot stat"
            self.tree.skipped.append((path, reason))
            return
        is_dir = stat.S_ISDIR(info.st_mode)
        if not _is_utf8(path):
            self.tree.skipped.append((path, "name is not valid UTF-8"))
            return
        if rules.ignores(path + "/" if is_dir else path):
            size = _tree_size(entry.path, self.tree.excluded) if is_dir else info.st_size
            self.tree.excluded.files += not is_dir
            self.tree.excluded.add(self.prefix + path + ("/" if is_dir else ""), size, is_dir)
            return
        self._check_depth(path)
        if entry.is_symlink():
            self._note_link(entry.path, path)
        if is_dir:
            identity = (info.st_dev, info.st_ino)
            if identity in ancestors:
                self.tree.skipped.append((path, "symlink cycle"))
                return
            self.walk_directory(entry.path, path + "/", rules, ancestors | {identity})
        elif stat.S_ISREG(info.st_mode):
            source = os.path.realpath(entry.path) if entry.is_symlink() else entry.path
            inputs.note_path(entry.path)  # its stat follows a link to whatever it points to now
            self.tree.files.append(_file_entry(self.prefix + path, source, info))
        else:
            self.tree.skipped.append((path, "not a regular file"))

    def _check_depth(self, path: str) -> None:
        depth = (self.prefix + path).count("/") + 1
        if depth > self.max_depth:
            shown = path if len(path) < 120 else f"{path[:60]}…{path[-40:]}"
            raise PackagingError(
                f"{self.root_text}: {shown} is {depth} directories deep, over the limit of "
                f"{self.max_depth} that unpacking accepts",
                hint="leave it out with `excludes`, or raise RUNENV_MAX_UNPACK_DEPTH (on every "
                "node that unpacks it)",
            )

    def _note_link(self, link: str, path: str) -> None:
        target = os.path.realpath(link)
        if os.path.commonpath([target, self.root_text]) != self.root_text:
            self.tree.external_links.append((path, target))

    def _with_ignore_files(self, directory: str, relative: str, rules: _Rules) -> _Rules:
        added = []
        for name in self.ignore_files:
            lines = _read_lines(os.path.join(directory, name))
            if lines:
                added.append(_Spec.from_lines(relative, lines))
        if not added:
            return rules
        return _Rules(rules.defaults, (*rules.nested, *added), rules.excludes)


def _root_specs(patterns: Sequence[str]) -> tuple[_Spec, ...]:
    """Patterns relative to the root; nothing at all for no patterns, so nothing is matched."""
    return (_Spec.from_lines("", patterns),) if patterns else ()


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []


def _file_entry(path: str, source: str, info: os.stat_result) -> FileEntry:
    return FileEntry(
        path=path,
        source=source,
        size=info.st_size,
        executable=bool(info.st_mode & stat.S_IXUSR),
        mtime_ns=info.st_mtime_ns,
        ctime_ns=info.st_ctime_ns,
        inode=info.st_ino,
    )


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return True


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return (info.st_dev, info.st_ino)


def _tree_size(directory: str, excluded: Excluded) -> int:
    """Bytes under a left-out directory (symlinks not followed), counting its files."""
    total, seen = 0, 0
    stack = [directory]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > _EXCLUDED_SCAN_LIMIT:
                excluded.partial = True
                return total
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                excluded.files += 1
                total += entry.stat(follow_symlinks=False).st_size
    return total
